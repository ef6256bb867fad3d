"""The worker's plain, synchronous core: what the faust agent calls for every message.

``IngestCore.handle`` decodes, validates and learns one message; ``flush`` makes the learner
states durable; ``outgoing`` / ``sent`` hand the worker what it must publish and hear back what
a broker acknowledged; ``start_runs`` / ``finish_runs`` move consolidations to and from the
trainer process. It is tested without an event loop; the faust app in :mod:`streams.app` only
moves messages in and out.

Exactly-once counting. Each profile's saved state holds, per source partition, the next offset
it has not applied (``sources["kafka:TOPIC:PARTITION"]``). A message below that offset was
applied before a crash or a rebalance and is skipped; offsets are committed to Kafka only after
the states covering them are on disk. Re-published events (same id) are skipped by the
learner's id window.

Nothing published before it is durable. Drift alerts and ModelUpdated events go into the
profile's outbox, which is saved with its state; dead letters wait in memory beside the offset
they cover. After a flush the worker publishes them, waits for the broker's acknowledgements,
marks them sent, and only then releases the offsets. A crash in between publishes them again
after the restart, with the same ``id``, so subscribers can drop the copy.

Ownership. A profile belongs to the worker that the group assigned the partition its events
come from: each profile records the partitions it was fed from (``sources.json``), and a worker
adopts on assignment the profiles whose recorded partitions it was given — never by re-hashing
the key, because producers' partitioners differ.

A profile that another process is writing (``memstream learn``, ``registry rollback``) is not
waited for on the event loop: its messages are parked, unacknowledged, while the other profiles
keep flowing, and applied once the lock is free (or dead-lettered after ``worker.locked_wait_s``).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from contracts.events import InvalidEvent, MemoryEvent
from learner.store.lock import ProfileLocked
from learner.online import OnlineLearner
from learner.positions import covers, learn_at
from learner.store.registry import RegistryError
from learner.training.plan import Plan
from learner.store.storage import CorruptStateError
from contracts.codec import DecodeError, EventCodec, dead_letter, model_updated_event
from streams.ownership import SOURCES_FILE, PartitionOwnership, source_partitions
from streams.parking import Parked, Parking
from streams.relay import OutboxRelay, Outgoing
from streams.run_pool import InProcessRuns, RunPool

__all__ = ["IngestCore", "Handled", "Outgoing", "StateNotSaved", "SOURCES_FILE", "source_partitions"]


class StateNotSaved(OSError):
    """A learner state could not be made durable; the offsets it covers must stay uncommitted."""


@dataclass
class Handled:
    """What became of one message: applied (or refused into a dead letter), or parked.

    >>> Handled(), Handled(parked=True).parked
    (Handled(parked=False), True)"""

    parked: bool = False


class IngestCore(PartitionOwnership, Parking, OutboxRelay):
    """Per-profile learner states of one worker, and their consolidations.

    Parameters
    ----------
    config
        A :class:`streams.settings.StreamConfig`.
    state_root
        The state directory (shared by every worker of the group).
    run_pool
        Where consolidations compute; ``None``: in this process (:class:`streams.run_pool.InProcessRuns`).
    log
        Where progress lines go.
    """

    def __init__(self, config, state_root: str | Path, run_pool: RunPool | None = None,
                 log: Callable[[str], None] | None = None, topic_ids: dict[str, str] | None = None):
        self.config = config
        self.topic_ids = dict(topic_ids or {})
        self.learner_config = config.learner_config()
        self.state_root = Path(state_root)
        self.codec = EventCodec(config.worker.max_event_bytes, config.worker.max_text_chars)
        self.log = log or (lambda _m: None)
        self.runs = run_pool if run_pool is not None else InProcessRuns(self.learner, self.log)
        self.learners: dict[str, OnlineLearner] = {}
        self.partition_of: dict[str, tuple[str, int]] = {}
        self.last_applied: dict[str, float] = {}  # profile -> when its last event was applied (idle profiles close)
        self.dirty: set[str] = set()
        self.due: dict[str, str] = {}
        self.parked: dict[str, deque[Parked]] = {}
        self.dead_letters: list[tuple[bytes | None, dict[str, Any]]] = []
        self.notices: list[tuple[str, bytes | None, dict[str, Any]]] = []  # not state: published at once
        self._requests_at_plan: dict[str, set[str]] = {}
        self._plans: dict[str, Plan] = {}
        self.counts: Counter[str] = Counter()
        self.dead_letter_reasons: Counter[str] = Counter()
        self.run_outcomes: Counter[str] = Counter()
        self.retry_at: dict[str, float] = {}  # profile -> when it may train again after a failed checkpoint
        self.run_seconds: list[float] = []
        self.first_message_at: float | None = None
        self.progress: list[tuple[int, float]] = []  # (messages, time) every 500 messages, for benchmarks
        self.last_message_at: float | None = None

    # -- learners ----------------------------------------------------------------------
    def learner(self, profile: str) -> OnlineLearner:
        """The learner of ``profile``, opened from the state directory on first use (never waits:
        :class:`learner.store.lock.ProfileLocked` when another process writes it). A profile opened with a
        run due (requested, or due by count when its last owner stopped or lost it before the run started)
        queues that run, whichever event or rebalance opened it."""
        found = self.learners.get(profile)
        if found is None:
            found = OnlineLearner.open(self.state_root, profile, self.learner_config, auto_consolidate=False,
                                       log=self.log, publish=True)
            self.learners[profile] = found
            if trigger := found.scheduler.ready(found.state.clock or 0.0, len(found.recent)):
                self.due[profile] = trigger
        return found

    # -- one message -------------------------------------------------------------------
    def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> Handled:
        """Take one message from ``memory-events``."""
        self.counts["messages"] += 1
        self.last_message_at = time.time()
        if self.first_message_at is None:
            self.first_message_at = self.last_message_at
        if self.counts["messages"] % 500 == 0:
            self.progress = (self.progress + [(self.counts["messages"], self.last_message_at)])[-2000:]
        try:
            event = self.codec.decode_memory(value)
        except DecodeError as exc:
            self._dead_letter(str(exc), topic, partition, offset, key, value)
            return Handled()
        if event.profile in self.parked:  # its earlier events wait: keep the order
            self._park(event.profile, topic, partition, offset, key, value)
            return Handled(parked=True)
        try:
            learner = self.learner(event.profile)
        except ProfileLocked as exc:
            self.log(f"[{event.profile}] {exc}: its events wait (unacknowledged) while other profiles flow")
            self._park(event.profile, topic, partition, offset, key, value)
            return Handled(parked=True)
        except (InvalidEvent, ValueError, OSError, CorruptStateError, RegistryError) as exc:
            self._dead_letter(f"profile state unusable: {exc}", topic, partition, offset, key, value)
            return Handled()
        self._apply(learner, event, topic, partition, offset)
        return Handled()

    def _apply(self, learner: OnlineLearner, event: MemoryEvent, topic: str, partition: int, offset: int) -> None:
        profile = event.profile
        self.partition_of[profile] = (topic, partition)
        self.last_applied[profile] = time.time()
        source = self.source_key(topic, partition)
        if source not in learner.sources:
            self._record_source(learner, source)
        if covers(learner, source, offset):
            self.counts["redelivered"] += 1  # applied before a crash or rebalance: already counted
            return
        self.dirty.add(profile)  # before learning: whatever the step changes is saved at the next flush
        step = learn_at(learner, source, offset, event)
        if step.quality is not None:
            self.counts["quality_flagged"] += 1
            if step.dropped:
                self.counts["quality_dropped"] += 1
                return
        if step.duplicate:
            self.counts["duplicates"] += 1
            return
        self.counts["learned"] += 1
        if step.drift is not None:
            self.counts["drift_alerts"] += 1
        if step.trigger:
            self.due[profile] = step.trigger

    def _dead_letter(self, reason: str, topic: str, partition: int, offset: int,
                     key: bytes | None, value: bytes | None) -> None:
        self.counts["dead_letters"] += 1
        self.dead_letter_reasons[reason.split(":")[0]] += 1
        letter = dead_letter(reason, topic, partition, offset, key,
                             value if isinstance(value, (bytes, bytearray)) else None)
        self.dead_letters.append((key, letter))

    # -- durability and what goes out -----------------------------------------------------
    def flush(self, profiles: list[str] | None = None) -> int:
        """Save the states of the dirty profiles (atomically); returns how many were saved.

        Raises :class:`StateNotSaved` when a state could not be written (disk full, read-only):
        the profile stays dirty, and the caller must neither publish nor release the offsets.
        """
        targets = [p for p in (profiles if profiles is not None else list(self.dirty)) if p in self.dirty]
        failed: list[tuple[str, OSError]] = []
        for profile in targets:
            try:
                self.learners[profile].save_state()
            except OSError as exc:
                failed.append((profile, exc))
                continue
            self.dirty.discard(profile)
        if failed:
            self.counts["state_write_failures"] += len(failed)
            profile, exc = failed[0]
            raise StateNotSaved(f"state of {len(failed)} profile(s) not saved, first {profile}: "
                                f"{exc.strerror or exc}")
        return len(targets)

    # -- consolidations -----------------------------------------------------------------
    def start_runs(self, now: float | None = None) -> list[str]:
        """Start the due consolidations that fit (one per profile; the rest wait their turn)."""
        started = []
        now = time.time() if now is None else now
        for profile, trigger in list(self.due.items()):
            if self.runs.busy(profile) or self.runs.full:
                continue  # queued: it starts when the run in progress finishes
            if self.retry_at.get(profile, 0.0) > now:
                continue  # its last version could not be written: wait before training again
            learner = self.learners.get(profile)
            del self.due[profile]
            if learner is None:
                continue
            plan = learner.start_run(trigger)
            if plan is None:
                continue
            self._requests_at_plan[profile] = set(learner.scheduler.requested)
            self._plans[profile] = plan
            self.dirty.add(profile)
            self.runs.submit(profile, plan, learner.config.to_dict())
            started.append(profile)
        return started

    def finish_runs(self, now: float | None = None) -> int:
        """Record the runs that finished: commit accepted versions; every run's ModelUpdated event goes into
        its profile's outbox. Returns how many finished."""
        finished = self.runs.poll()
        for run in finished:
            learner = self.learners.get(run.profile)
            self._plans.pop(run.profile, None)
            if learner is None:
                continue  # the profile moved to another worker meanwhile: its new owner reruns
            late_requests = learner.scheduler.requested - self._requests_at_plan.pop(run.profile, set())
            result = learner.finish_run(run.plan, run.result)
            for trigger in late_requests:  # asked for while the run computed: not lost
                learner.scheduler.request(trigger)
            self.dirty.add(run.profile)
            if result.status == "checkpoint_failed":
                self.retry_at[run.profile] = (now or time.time()) + self.config.worker.checkpoint_retry_s
                self.due[run.profile] = run.plan.trigger
                self.notices.append(("model-updated", run.profile.encode(),
                                     model_updated_event({**result.report(), "action": "train",
                                                          "id": f"{run.profile}/run/{result.run_id}/failed"})))
            else:
                self.retry_at.pop(run.profile, None)
            self.run_outcomes[result.status] += 1
            self.run_seconds.append(run.seconds)
            self.log(f"[{run.profile}] run {result.run_id}: {result.status} ({result.reason})")
            if trigger := learner.scheduler.ready(learner.state.clock or 0.0, len(learner.recent)):
                self.due[run.profile] = trigger
        return len(finished)

    def cancel_run(self, profile: str) -> None:
        plan = self.runs.cancel(profile)
        self._plans.pop(profile, None)
        if plan is not None and profile in self.learners:
            self.learners[profile].cancel_run(plan)
            self._requests_at_plan.pop(profile, None)

    def close(self) -> None:
        """Stop every run (nothing partial is left), save every state, release every lock."""
        for profile in list(self.runs.running):
            self.cancel_run(profile)
        self.runs.close()
        self.flush()
        for learner in self.learners.values():
            learner.close()
        self.learners.clear()

    # -- numbers ------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "first_message_at": self.first_message_at,
            "last_message_at": self.last_message_at,
            "progress": self.progress,
            "counts": dict(self.counts),
            "dead_letter_reasons": dict(self.dead_letter_reasons),
            "runs": dict(self.run_outcomes),
            "profiles": {p: {"events_seen": l.events_seen, "duplicates": l.duplicates,
                             "reservoir": len(l.reservoir), "recent": len(l.recent),
                             "version": l.registry.current_version}
                         for p, l in self.learners.items()},
        }
