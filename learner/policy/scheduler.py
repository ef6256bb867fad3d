"""When to consolidate: on example count, elapsed time, drift, or a manual request.

Whichever trips first wins; if several trip on the same event the order of precedence is
manual, drift, count, time. A run whose first attempt the gate refused comes before all of
them: its events get their second attempt at once, under the trigger that started the first.
The clock is whatever the caller passes as ``now`` (event time when replaying a file, wall time
in a live worker), so tests need no sleeping.

Examples
--------
>>> from learner.policy.config import SchedulerConfig
>>> s = ConsolidationScheduler(SchedulerConfig(count=3, interval_s=100.0, min_examples=2))
>>> [s.observe(now=float(t)) for t in range(4)]
[None, None, 'count', 'count']
>>> s.mark_consolidated(now=3.0, examples_covered=4)
>>> s.observe(now=50.0), s.observe(now=104.0)
(None, 'time')
>>> s.request("manual"); s.pending()
'manual'

A drift alert waits for ``after_drift`` events of the new distribution before its run:

>>> d = ConsolidationScheduler(SchedulerConfig(count=100, interval_s=None, min_examples=2, after_drift=3))
>>> d.request("drift"); [d.observe(now=0.0) for _ in range(4)]
[None, None, 'drift', 'drift']
>>> ConsolidationScheduler.restore(s.snapshot()).snapshot() == s.snapshot()
True

A refused first attempt is due again at once:

>>> r = ConsolidationScheduler(SchedulerConfig(count=100, interval_s=None, min_examples=2))
>>> r.request("manual"); r.mark_consolidated(now=1.0, examples_covered=0); r.due(1.0)
>>> r.retry("manual"); r.due(1.0), r.pending()
('manual', 'manual')
>>> r.mark_consolidated(now=2.0, examples_covered=5); r.due(2.0) is None
True
"""

from __future__ import annotations

from typing import Any

from learner.policy.config import SchedulerConfig

__all__ = ["ConsolidationScheduler", "TRIGGERS"]

TRIGGERS = ("manual", "drift", "count", "time")


class ConsolidationScheduler:
    """Counts examples since the last consolidation and decides when the next is due.

    Its thresholds are a :class:`~learner.policy.config.SchedulerConfig` (``count``, ``interval_s``,
    ``min_examples``, ``after_drift``: their defaults and checks live there). ``after_drift`` holds a
    drift run back until that many examples (the alerting one first) arrived: a run started right at
    the alert would see a few dozen events of the new distribution, too few to learn it (and the
    quality gate would refuse it).
    """

    def __init__(self, config: SchedulerConfig | None = None):
        self.config = config or SchedulerConfig()
        self.since_drift = 0
        self.new_examples = 0
        self.total_examples = 0
        self.consolidations = 0
        self.last_consolidation_ts: float | None = None
        self.requested: set[str] = set()
        self.retrying: str | None = None

    @property
    def count(self) -> int:
        return self.config.count

    @property
    def interval_s(self) -> float | None:
        return self.config.interval_s

    @property
    def min_examples(self) -> int:
        return self.config.min_examples

    @property
    def after_drift(self) -> int:
        return self.config.after_drift

    def observe(self, now: float, n: int = 1) -> str | None:
        """Count ``n`` new examples at time ``now``; return the trigger that is due, if any."""
        self.new_examples += n
        self.total_examples += n
        self.since_drift += n
        if self.last_consolidation_ts is None:
            self.last_consolidation_ts = now
        return self.due(now)

    def due(self, now: float) -> str | None:
        """The trigger due at ``now`` without counting anything."""
        if self.retrying:
            return self.retrying
        if "manual" in self.requested:
            return "manual"
        if "drift" in self.requested and self.new_examples >= self.min_examples \
                and self.since_drift >= self.after_drift:
            return "drift"
        if self.new_examples >= self.count:
            return "count"
        if (
            self.interval_s is not None
            and self.last_consolidation_ts is not None
            and self.new_examples >= self.min_examples
            and now - self.last_consolidation_ts >= self.interval_s
        ):
            return "time"
        return None

    def pending(self) -> str | None:
        """A requested trigger that is waiting, if any (a second attempt first, then manual)."""
        if self.retrying:
            return self.retrying
        for trigger in TRIGGERS:
            if trigger in self.requested:
                return trigger
        return None

    def request(self, trigger: str) -> None:
        """Ask for a consolidation (``manual``) or mark that drift was detected (``drift``)."""
        if trigger not in ("manual", "drift"):
            raise ValueError(f"only 'manual' and 'drift' can be requested, got {trigger!r}")
        if trigger == "drift" and trigger not in self.requested:
            self.since_drift = 0
        self.requested.add(trigger)

    def retry(self, trigger: str) -> None:
        """The gate refused a first attempt started by ``trigger``: its second attempt is due at once."""
        self.retrying = trigger

    def drop_retry(self) -> None:
        """No events are left for a second attempt: nothing is due on its account."""
        self.retrying = None

    def mark_consolidated(self, now: float, examples_covered: int) -> None:
        """A consolidation finished (accepted or not) covering ``examples_covered`` examples."""
        self.new_examples = max(0, self.new_examples - examples_covered)
        self.consolidations += 1
        self.last_consolidation_ts = now
        self.requested.clear()
        self.retrying = None

    def ready(self, now: float, waiting: int) -> str | None:
        """The trigger of the run to start now with ``waiting`` new events: what :meth:`observe` named or
        would name, each trigger at its own threshold (:meth:`due`: a second attempt or a manual request at
        once, count at ``count`` even below ``min_examples``, time and drift at ``min_examples``), else a
        requested drift run still short of its ``after_drift`` events once ``min_examples`` wait. What
        the events a worker took over had already tripped is ready there as it was where they were counted.

        >>> s = ConsolidationScheduler(SchedulerConfig(count=3, interval_s=None, min_examples=5))
        >>> [s.observe(now=0.0) for _ in range(3)], s.ready(0.0, waiting=3)
        ([None, None, 'count'], 'count')
        """
        trigger = self.due(now)
        if trigger:
            return trigger
        requested = self.pending()
        return requested if requested and waiting >= self.min_examples else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "scheduler",
            "count": self.count,
            "interval_s": self.interval_s,
            "min_examples": self.min_examples,
            "after_drift": self.after_drift,
            "since_drift": self.since_drift,
            "new_examples": self.new_examples,
            "total_examples": self.total_examples,
            "consolidations": self.consolidations,
            "last_consolidation_ts": self.last_consolidation_ts,
            "requested": sorted(self.requested),
            "retrying": self.retrying,
        }

    @classmethod
    def restore(cls, data: dict[str, Any], config: SchedulerConfig | None = None) -> "ConsolidationScheduler":
        """Rebuild from :meth:`snapshot`; ``config`` (the current settings) replaces the saved thresholds,
        never the counters."""
        if data.get("kind") != "scheduler":
            raise ValueError(f"not a scheduler snapshot (kind={data.get('kind')!r})")
        if config is None:
            config = SchedulerConfig(count=data["count"], interval_s=data["interval_s"],
                                     min_examples=data["min_examples"], after_drift=int(data.get("after_drift", 0)))
        s = cls(config)
        s.new_examples = int(data["new_examples"])
        s.total_examples = int(data["total_examples"])
        s.consolidations = int(data["consolidations"])
        s.last_consolidation_ts = data["last_consolidation_ts"]
        s.requested = set(data["requested"])
        s.since_drift = int(data.get("since_drift", 0))
        s.retrying = data.get("retrying")
        return s
