"""No event applied past one that was never delivered.

A profile's saved offset says "everything of this partition below it is applied", so the worker
must see a partition's messages in offset order with none missing: a message read by the client
but dropped before it reached the agent (a rebalance that suspends the flow at that moment) and
then a later one applied would move the offset past it, and the dropped one would be skipped as
already applied when it came again. The memory-events topic is neither compacted nor written in
transactions, so within one assignment its offsets are consecutive; a jump means a message
missed, and so does a first message past the offset the client was sought to (its committed
offset, at an assignment or after a rebalance dropped a batch). :class:`OffsetGapGuard` notices
the jump; the worker then seeks the partition back to the first missed offset and ignores (does
not apply, does not acknowledge) what was already queued after it until the re-read arrives. A gap
that is still there when the partition is read again from before it is a real one (a record that
does not exist) and is accepted. A re-read that has not begun some seconds after its seek (the seek
lost in a rebalance, or the re-read dropped by the client behind a batch fetched before it) is asked
for again (:meth:`OffsetGapGuard.overdue`): otherwise the partition would wait for it forever.

Examples
--------
>>> guard = OffsetGapGuard()
>>> [guard.check("t", 0, o) for o in (10, 11)]  # with no offset sought, the first is taken as it comes
['apply', 'apply']
>>> guard.check("t", 0, 13)  # 12 never arrived
('seek', 12)
>>> guard.check("t", 0, 14), guard.check("t", 0, 12), guard.check("t", 0, 13)  # queued, then the re-read
('ignore', 'apply', 'apply')
>>> guard.check("t", 0, 20), guard.check("t", 0, 20)  # 14..19 missing even when read again: accepted
(('seek', 14), 'apply')
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

__all__ = ["OffsetGapGuard", "APPLY", "IGNORE", "REREAD_AFTER_S", "ask_again_for_overdue_rereads"]

APPLY = "apply"
IGNORE = "ignore"
REREAD_AFTER_S = 10.0  # a partition read again past a missed offset: its first re-read message is due by then


class OffsetGapGuard:
    """Per partition: the last offset applied and, after a jump, the offset being read again."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last: dict[tuple[str, int], int] = {}
        # tp -> (offset sought, highest seen since, when the re-read was last asked for)
        self.resync: dict[tuple[str, int], tuple[int, int, float]] = {}
        self.seeks = 0

    def check(self, topic: str, partition: int, offset: int) -> str | tuple[str, int]:
        """``"apply"``, ``"ignore"`` (already queued past a gap: it comes again), or ``("seek", offset)``."""
        tp = (topic, partition)
        if tp in self.resync:
            target, highest, asked = self.resync[tp]
            if offset < target:
                return IGNORE
            if offset > target and offset > highest:  # still the messages queued before the seek
                self.resync[tp] = (target, offset, asked)
                return IGNORE
            del self.resync[tp]  # the re-read: from the offset sought, or from past a real gap
            self.last[tp] = offset
            return APPLY
        last = self.last.get(tp)
        if last is not None and offset > last + 1:
            self.resync[tp] = (last + 1, offset, self.clock())
            self.seeks += 1
            return ("seek", last + 1)
        self.last[tp] = offset  # the next one, or one read again from before (the core skips it as applied)
        return APPLY

    def overdue(self, after_s: float) -> list[tuple[str, int, int]]:
        """``(topic, partition, offset)`` of each re-read that has not begun ``after_s`` seconds after it was
        asked for: seek it again (each is asked for again at most once per ``after_s``).

        >>> now = [0.0]
        >>> guard = OffsetGapGuard(clock=lambda: now[0])
        >>> guard.check("t", 0, 3), guard.check("t", 0, 5)
        ('apply', ('seek', 4))
        >>> now[0] = 9.0
        >>> guard.overdue(10.0), guard.check("t", 0, 6)  # still the queued ones
        ([], 'ignore')
        >>> now[0] = 11.0
        >>> guard.overdue(10.0), guard.overdue(10.0)
        ([('t', 0, 4)], [])
        >>> guard.check("t", 0, 4), guard.overdue(0.0)  # the re-read came
        ('apply', [])
        """
        now, late = self.clock(), []
        for tp, (target, highest, asked) in self.resync.items():
            if now - asked >= after_s:
                self.resync[tp] = (target, highest, now)
                late.append((tp[0], tp[1], target))
        return late

    def restart(self, topic: str, partition: int, offset: int) -> None:
        """Reading of a partition starts again at ``offset`` (the client sought it to its committed offset: an
        assignment, or a batch dropped by a rebalance): a first message past it means one was missed.

        >>> guard = OffsetGapGuard()
        >>> guard.restart("t", 0, 5)
        >>> guard.check("t", 0, 7), guard.check("t", 0, 5)  # 5 and 6 never came: read again from 5
        (('seek', 5), 'apply')
        """
        tp = (topic, partition)
        self.resync.pop(tp, None)
        self.last[tp] = offset - 1

    def sought(self, committed) -> None:
        """The client sought its partitions to their committed offsets (``{tp: offset or None}``, a ``tp``
        with ``topic`` and ``partition``; None: no commit, read from where the reset policy says)."""
        for tp, offset in committed.items():
            if offset is not None:
                self.restart(tp.topic, tp.partition, offset)

    def forget(self, partitions) -> None:
        """Partitions taken away: if they come back, the first offset read is taken as it comes unless a seek
        says where reading starts (:meth:`sought`)."""
        for tp in partitions:
            self.last.pop(tp, None)
            self.resync.pop(tp, None)


async def ask_again_for_overdue_rereads(guard: OffsetGapGuard, seek: Callable[[str, int, int], Awaitable[Any]],
                                        log: Callable[[str], None], after_s: float = REREAD_AFTER_S) -> None:
    """``seek(topic, partition, offset)`` again for each re-read of ``guard`` that has not begun ``after_s``
    after its seek (the seek lost in a rebalance, or its re-read dropped); a seek that fails is logged and
    asked again later."""
    for topic, partition, offset in guard.overdue(after_s):
        log(f"{topic}[{partition}]: reading again from offset {offset} has not begun; asking again")
        try:
            await seek(topic, partition, offset)
        except Exception as exc:  # noqa: BLE001 - no longer assigned, or between states: asked again later
            log(f"{topic}[{partition}]: the seek failed ({type(exc).__name__}: {exc})")
