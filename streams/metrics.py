"""Prometheus metrics of a worker (``prometheus-client``), served on ``/metrics``.

Each worker keeps its own registry, so two apps in one process (tests) do not collide.

Examples
--------
>>> m = WorkerMetrics()
>>> m.events_in.inc(3)
>>> m.dead_letters.labels(reason="not msgpack").inc()
>>> b"memstream_events_in_total 3.0" in m.render()
True
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

__all__ = ["WorkerMetrics"]

#: Seconds of work on the core, held on the event loop or done in a thread.
HOLD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class WorkerMetrics:
    """The worker's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("memstream_events_in", "Messages read from memory-events.", registry=r)
        self.events_learned = Counter("memstream_events_learned", "Events taken into a learner state.", registry=r)
        self.dead_letters = Counter("memstream_dead_letters", "Messages sent to dead letters, by reason.",
                                    ["reason"], registry=r)
        self.duplicates = Counter("memstream_duplicates", "Re-published events skipped (same id).", registry=r)
        self.redelivered = Counter("memstream_redelivered", "Messages applied before a crash or rebalance, "
                                   "skipped on redelivery.", registry=r)
        self.state_write_failures = Counter("memstream_state_write_failures",
                                            "Ticks whose learner states could not be written (offsets held back).",
                                            registry=r)
        self.quality = Counter("memstream_quality_gate", "Events failing the quality gate.", registry=r)
        self.reservoir_size = Gauge("memstream_reservoir_size", "Events in the replay reservoir.", ["profile"],
                                    registry=r)
        self.drift_divergence = Gauge("memstream_drift_divergence", "Latest KL divergence of the drift window.",
                                      ["profile"], registry=r)
        self.consolidations = Counter("memstream_consolidations", "Consolidations by outcome.", ["outcome"],
                                      registry=r)
        self.consolidation_seconds = Histogram("memstream_consolidation_seconds", "Wall time of a consolidation.",
                                               buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800), registry=r)
        self.rebalance_seconds = Histogram(
            "memstream_rebalance_seconds", "Rebalances: revocation to assignment, assignment to the first event.",
            ["span"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120), registry=r)
        self.consumer_lag = Gauge("memstream_consumer_lag", "Messages not yet read, per partition.",
                                  ["partition"], registry=r)
        self.loop_held = Histogram(
            "memstream_event_loop_held_seconds", "Synchronous work on the worker's event loop (nothing else "
            "runs meanwhile: no heartbeat, no ingest), by part.", ["part"],
            buckets=HOLD_BUCKETS, registry=r)
        self.core_work = Histogram(
            "memstream_core_work_seconds", "Work on the learner states in a thread (ingest waits for it, the event "
            "loop does not), by part.", ["part"], buckets=HOLD_BUCKETS, registry=r)

        self._seen: Tally[str] = Tally()  # the core's totals already counted here

    def update(self, core, consumer, memory_topic: str) -> None:
        """Bring the metrics up to an ingest core's totals and the consumer's lag on ``memory_topic``."""
        for name, metric in (("messages", self.events_in), ("learned", self.events_learned),
                             ("duplicates", self.duplicates), ("redelivered", self.redelivered),
                             ("quality_flagged", self.quality)):
            self._count(name, core.counts[name], metric)
        for reason, n in core.dead_letter_reasons.items():
            self._count(f"dl:{reason}", n, self.dead_letters.labels(reason=reason))
        for outcome, n in core.run_outcomes.items():
            self._count(f"run:{outcome}", n, self.consolidations.labels(outcome=outcome))
        for seconds in core.run_seconds:
            self.consolidation_seconds.observe(seconds)
        core.run_seconds.clear()
        for profile, learner in core.learners.items():
            self.reservoir_size.labels(profile=profile).set(len(learner.reservoir))
            if learner.drift is not None:
                self.drift_divergence.labels(profile=profile).set(learner.drift.divergence_)
        try:
            for tp in consumer.assignment():
                if tp.topic == memory_topic:
                    high = consumer.highwater(tp)
                    read = consumer._read_offset.get(tp)  # faust's own record of the last offset read
                    if high is not None:
                        self.consumer_lag.labels(partition=str(tp.partition)).set(max(0, high - ((read or -1) + 1)))
        except Exception:  # noqa: BLE001 - lag is best effort; never let metrics stop ingest
            pass

    def rebalance(self, to_assignment: float, to_first_event: float) -> None:
        self.rebalance_seconds.labels(span="assignment").observe(to_assignment)
        self.rebalance_seconds.labels(span="first_event").observe(to_first_event)

    def _count(self, key: str, total: int, counter) -> None:
        if total > self._seen[key]:
            counter.inc(total - self._seen[key])
            self._seen[key] = total

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on ``port`` (a daemon thread)."""
        start_http_server(port, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
