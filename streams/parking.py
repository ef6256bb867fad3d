"""Parking: the messages of a profile that another process is writing (``memstream learn``,
``registry rollback``) wait here, unacknowledged and in order, while the other profiles keep
flowing; they are applied once the lock is free, or dead-lettered after ``worker.locked_wait_s``."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from contracts.events import InvalidEvent
from learner.store.lock import ProfileLocked
from learner.store.registry import RegistryError
from learner.store.storage import CorruptStateError

__all__ = ["Parked", "Parking"]


@dataclass
class Parked:
    """One message waiting for its profile's lock, and since when.

    >>> Parked("memstream.memory-events", 2, 41, b"ann", b"...", since=0.0).offset
    41"""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    since: float


class Parking:
    """The parking part of :class:`streams.ingest.IngestCore` (its learners, codec and dead letters are
    the core's)."""

    def _park(self, profile: str, topic: str, partition: int, offset: int, key, value) -> None:
        self.parked.setdefault(profile, deque()).append(Parked(topic, partition, offset, key, value, time.time()))
        self.counts["parked"] += 1

    def retry_parked(self, now: float | None = None) -> list[tuple[str, int, int]]:
        """Apply the parked messages whose profile can be opened now; dead-letter those that waited longer
        than ``worker.locked_wait_s``. Returns the ``(topic, partition, offset)`` of every message settled."""
        now = time.time() if now is None else now
        settled = []
        for profile, queue in list(self.parked.items()):
            try:
                learner = self.learner(profile)
            except ProfileLocked as exc:
                if now - queue[0].since < self.config.worker.locked_wait_s:
                    continue
                for p in queue:
                    self._dead_letter(f"profile locked: {exc} for more than {self.config.worker.locked_wait_s:g} s",
                                      p.topic, p.partition, p.offset, p.key, p.value)
                    settled.append((p.topic, p.partition, p.offset))
                del self.parked[profile]
                continue
            except (InvalidEvent, ValueError, OSError, CorruptStateError, RegistryError) as exc:
                learner, error = None, exc
            del self.parked[profile]
            for p in queue:
                if learner is None:
                    self._dead_letter(f"profile state unusable: {error}", p.topic, p.partition, p.offset, p.key,
                                      p.value)
                else:
                    self._apply(learner, self.codec.decode_memory(p.value), p.topic, p.partition, p.offset)
                settled.append((p.topic, p.partition, p.offset))
        return settled
