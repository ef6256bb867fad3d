"""How long a rebalance keeps a worker's partitions idle, as the worker sees it.

Three moments: the partitions are taken away (or the worker joins: its start counts as the
revocation), the group assigns the new set, and the first event of an assigned partition is
applied. The two spans go to the log and to the ``memstream_rebalance_seconds`` histogram.

Examples
--------
>>> now = iter([10.0, 11.5, 12.0]).__next__
>>> timer = RebalanceTimer(clock=now)
>>> timer.revoked()
>>> timer.assigned({0, 3})
>>> timer.applied(5) is None  # not one of the partitions just assigned
True
>>> timer.applied(3)
(1.5, 0.5)
>>> timer.applied(0) is None  # once per rebalance
True
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["RebalanceTimer", "assignment_line"]


class RebalanceTimer:
    """Revocation → assignment → first event applied, once per rebalance."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 report: Callable[[float, float], None] | None = None):
        self.clock = clock
        self.report = report or (lambda _to_assignment, _to_first_event: None)
        self._revoked_at: float | None = clock()  # joining the group is the first "revocation"
        self._assigned_at: float | None = None
        self._waiting: set[int] = set()

    def revoked(self) -> None:
        if self._assigned_at is not None or self._revoked_at is None:
            self._revoked_at = self.clock()
        self._assigned_at = None
        self._waiting = set()

    def assigned(self, partitions: set[int]) -> None:
        self._assigned_at = self.clock()
        self._waiting = set(partitions)
        if self._revoked_at is None:
            self._revoked_at = self._assigned_at

    def applied(self, partition: int) -> tuple[float, float] | None:
        """The first event of an assigned partition: (revocation → assignment, assignment → this), in s."""
        if partition not in self._waiting or self._assigned_at is None:
            return None
        now = self.clock()
        spans = (self._assigned_at - self._revoked_at, now - self._assigned_at)
        self._waiting = set()
        self._revoked_at = None
        self.report(*spans)
        return spans


def assignment_line(topic: str, partitions: set[int], partition_count: Callable[[], int | None]) -> str:
    """The worker's log line for an assignment; a worker given none of ``topic``'s partitions (more
    workers than partitions) says that it idles, and how many partitions the group shares.

    >>> assignment_line("m.memory-events", {3, 0}, lambda: 6)
    'rebalance: given partitions 0, 3 of m.memory-events'
    >>> assignment_line("m.memory-events", set(), lambda: 2)
    "rebalance: given no partition of m.memory-events (its 2 go to the group's other members): this worker idles until a rebalance gives it one"
    """
    if partitions:
        return f"rebalance: given partitions {', '.join(map(str, sorted(partitions)))} of {topic}"
    try:
        count = partition_count()
    except Exception:  # noqa: BLE001 - the count only details a log line
        count = None
    return (f"rebalance: given no partition of {topic} (its {count or 'partitions'} go to the group's other "
            "members): this worker idles until a rebalance gives it one")
