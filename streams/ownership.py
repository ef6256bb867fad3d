"""Which profiles a worker owns: the partitions of the group's assignment and the partitions each
profile recorded it was fed from (``sources.json``) — never a re-hash of the key, because producers'
partitioners differ. A rebalance that takes partitions away stops their runs and saves and closes
their profiles; one that gives partitions opens the profiles fed from them that have something
waiting."""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from learner.store.lock import ProfileLocked
from learner.store.storage import atomic_write_json

if TYPE_CHECKING:
    from learner.online import OnlineLearner

__all__ = ["PartitionOwnership", "SOURCES_FILE", "source_partitions"]

SOURCES_FILE = "sources.json"


def source_partitions(sources: list[str], topic: str) -> set[int]:
    """The partitions of ``topic`` among a profile's source keys.

    >>> sorted(source_partitions(["kafka:m#AbC:2", "kafka:m:0", "kafka:other:1", "file:/x"], "m"))
    [0, 2]
    """
    found = set()
    for key in sources:
        if not key.startswith("kafka:"):
            continue
        name, _, partition = key[len("kafka:"):].rpartition(":")
        if name.split("#", 1)[0] == topic and partition.isdigit():
            found.add(int(partition))
    return found


class PartitionOwnership:
    """The ownership part of :class:`streams.ingest.IngestCore` (its learners, parked messages and
    runs are the core's)."""

    def release_partitions(self, partitions: set[tuple[str, int]]) -> list[str]:
        """A rebalance took these partitions away: stop their runs, save and close their profiles."""
        gone = [p for p, tp in self.partition_of.items() if tp in partitions]
        for profile in gone:
            self.cancel_run(profile)
        self.flush(gone)
        for profile in gone:
            self.learners.pop(profile).close()
            self.partition_of.pop(profile, None)
            self.due.pop(profile, None)
        for profile, queue in list(self.parked.items()):  # they come back from the new owner's reads
            kept = deque(p for p in queue if (p.topic, p.partition) not in partitions)
            if kept:
                self.parked[profile] = kept
            else:
                del self.parked[profile]
        return gone

    def adopt_partitions(self, topic: str, partitions: set[int]) -> list[str]:
        """A rebalance gave us these partitions of ``topic``: open the profiles fed from them that have
        something waiting — events to publish, or a consolidation requested or due by count — and queue
        it, so a run cut short by a stop, or an event a crash left unsent, is not forgotten.

        Which profiles are ours follows from each profile's recorded source partitions, not from the
        key's hash."""
        adopted = []
        for directory in sorted(self.state_root.iterdir()) if self.state_root.is_dir() else []:
            profile = directory.name
            if profile in self.learners or not (directory / SOURCES_FILE).is_file():
                continue
            mine = source_partitions(_read_sources(directory), topic) & partitions
            if not mine:
                continue
            try:
                self.learner(profile)  # queues the run it has due
            except ProfileLocked as exc:
                self.log(f"rebalance: {profile} not taken over yet: {exc}")
                continue
            self.partition_of[profile] = (topic, min(mine))
            adopted.append(profile)
        return adopted

    def close_idle_profiles(self, now: float | None = None) -> list[str]:
        """Close the profiles that have had nothing to do for ``worker.profile_idle_s``: no event applied,
        none parked, no run due or computing, the state saved and its outbox sent. Their locks are given
        back and their memory freed; the next event opens a profile again.

        A profile's events may come from a partition another worker reads (after partitions were
        added to the topic, a key hashes elsewhere): that worker's events for it wait, parked, until
        the one holding it lets it go."""
        now = time.time() if now is None else now
        idle = [p for p, learner in self.learners.items()
                if now - self.last_applied.get(p, 0.0) >= self.config.worker.profile_idle_s
                and p not in self.dirty and p not in self.due and p not in self.parked and p not in self._plans
                and not self.runs.busy(p) and not learner.outbox.pending()]
        for profile in idle:
            self.learners.pop(profile).close()
            self.partition_of.pop(profile, None)
            self.last_applied.pop(profile, None)
        return idle

    def _record_source(self, learner: OnlineLearner, source: str) -> None:
        """Write down the partitions a profile is fed from (what adoption reads after a rebalance)."""
        keys = sorted({*(k for k in learner.sources if k.startswith("kafka:")), source})
        atomic_write_json(learner.directory / SOURCES_FILE, {"sources": keys})

    def source_key(self, topic: str, partition: int) -> str:
        """Where a profile keeps its next offset of one partition; the topic id (when the broker
        gives one) makes a re-created topic a new source instead of one whose offsets went back."""
        tid = self.topic_ids.get(topic)
        return f"kafka:{topic}#{tid}:{partition}" if tid else f"kafka:{topic}:{partition}"


def _read_sources(directory: Path) -> list[str]:
    try:
        return list(json.loads((directory / SOURCES_FILE).read_text(encoding="utf-8")).get("sources", []))
    except (OSError, ValueError, AttributeError):
        return []
