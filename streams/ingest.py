"""The worker's plain, synchronous core: what the faust agent calls for every message.

``IngestCore.handle`` decodes, validates, gates and learns one message and says what to send
(dead letters, drift alerts); ``flush`` makes the learner states durable (after which the
agent releases the offsets they cover for commit); ``start_runs`` / ``finish_runs`` move
consolidations to and from their run processes. It is tested without an event loop; the faust
app in :mod:`streams.app` only moves messages in and out.

Exactly-once counting. Each profile's saved state holds, per source partition, the next
offset it has not applied (``sources["kafka:TOPIC:PARTITION"]``). A message below that offset
was applied before a crash or a rebalance and is skipped; offsets are committed to Kafka only
after the states covering them are on disk. Re-published events (same id) are skipped by the
learner's id window.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from learner.events import InvalidEvent
from learner.lock import ProfileLocked
from learner.online import OnlineLearner, RunOutcome
from learner.quality import QualityGate
from streams.codec import DecodeError, EventCodec, dead_letter, drift_alert_event, model_updated_event
from streams.runs import FinishedRun, RunPool

__all__ = ["IngestCore", "Outgoing", "StateNotSaved"]


class StateNotSaved(OSError):
    """A learner state could not be made durable; the offsets it covers must stay uncommitted."""


@dataclass
class Outgoing:
    """Messages to publish: ``(topic kind, key, map)`` with kind in dead-letters, drift-alerts, model-updated."""

    messages: list[tuple[str, bytes | None, dict[str, Any]]] = field(default_factory=list)

    def add(self, kind: str, key: bytes | None, data: dict[str, Any]) -> None:
        self.messages.append((kind, key, data))


class IngestCore:
    """Per-profile learner states of one worker, and their consolidations.

    Parameters
    ----------
    config
        A :class:`streams.settings.StreamConfig`.
    state_root
        The state directory (shared by every worker of the group).
    run_pool
        Where consolidations compute; ``None`` runs them in this process (tests, tiny setups).
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
        self.gate = QualityGate(config.worker.min_chars) if config.worker.quality != "off" else None
        self.runs = run_pool
        self.log = log or (lambda _m: None)
        self.learners: dict[str, OnlineLearner] = {}
        self.partition_of: dict[str, tuple[str, int]] = {}
        self.dirty: set[str] = set()
        self.due: dict[str, str] = {}
        self._requests_at_plan: dict[str, set[str]] = {}
        self.counts: Counter[str] = Counter()
        self.dead_letter_reasons: Counter[str] = Counter()
        self.run_outcomes: Counter[str] = Counter()
        self.retry_at: dict[str, float] = {}  # profile -> when it may train again after a failed checkpoint
        self.run_seconds: list[float] = []
        self.first_message_at: float | None = None
        self.progress: list[tuple[int, float]] = []  # (messages, time) every 500 messages, for benchmarks
        self.last_message_at: float | None = None
        self._finished: list[FinishedRun] = []  # runs computed in this process (run_pool=None)
        self._local_outcomes: dict[str, RunOutcome] = {}

    # -- learners ----------------------------------------------------------------------
    def learner(self, profile: str, wait_s: float = 0.0) -> OnlineLearner:
        """The learner of ``profile``, opened from the state directory on first use."""
        found = self.learners.get(profile)
        if found is not None:
            return found
        deadline = time.monotonic() + wait_s
        while True:
            try:
                learner = OnlineLearner.open(self.state_root, profile, self.learner_config,
                                             auto_consolidate=False, log=self.log)
                break
            except ProfileLocked:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)  # the previous owner is still saving it after a rebalance
        self.learners[profile] = learner
        return learner

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
        return gone

    def adopt_partitions(self, topic: str, partitions: set[int], n_partitions: int) -> list[str]:
        """A rebalance gave us these partitions: open their profiles that have a consolidation waiting
        (requested, or due by count) and queue it, so a run cut short by a stop is not forgotten."""
        from kafka.partitioner.default import murmur2  # Kafka's default partitioner: key = profile

        adopted = []
        for directory in sorted(self.state_root.iterdir()) if self.state_root.is_dir() else []:
            profile = directory.name
            if profile in self.learners or not (directory / "learner_state.json").is_file():
                continue
            partition = (murmur2(profile.encode("utf-8")) & 0x7FFFFFFF) % n_partitions
            if partition not in partitions:
                continue
            learner = self.learner(profile, wait_s=self.config.worker.session_timeout_s)
            self.partition_of[profile] = (topic, partition)
            sched = learner.scheduler
            trigger = sched.pending() or sched.due(sched.last_consolidation_ts or 0.0)
            if trigger and len(learner.recent) >= learner.config.scheduler.min_examples:
                self.due[profile] = trigger
            adopted.append(profile)
        return adopted

    # -- one message -------------------------------------------------------------------
    def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> Outgoing:
        """Take one message from ``memory-events``; returns what to publish because of it."""
        out = Outgoing()
        self.counts["messages"] += 1
        self.last_message_at = time.time()
        if self.first_message_at is None:
            self.first_message_at = self.last_message_at
        if self.counts["messages"] % 500 == 0:
            self.progress = (self.progress + [(self.counts["messages"], self.last_message_at)])[-2000:]
        try:
            event = self.codec.decode_memory(value)
        except DecodeError as exc:
            self._dead_letter(out, str(exc), topic, partition, offset, key, value)
            return out
        try:
            learner = self.learner(event.profile, wait_s=self.config.worker.session_timeout_s)
        except (InvalidEvent, ValueError, OSError) as exc:
            self._dead_letter(out, f"profile state unusable: {exc}", topic, partition, offset, key, value)
            return out
        self.partition_of[event.profile] = (topic, partition)
        source = self.source_key(topic, partition)
        if offset < learner.sources.get(source, 0):
            self.counts["redelivered"] += 1  # applied before a crash or rebalance: already counted
            return out
        learner.sources[source] = offset + 1
        self.dirty.add(event.profile)
        if self.gate is not None:
            reason = self.gate.check(event)
            if reason is not None:
                self.counts["quality_flagged"] += 1
                if self.config.worker.quality == "drop":
                    self.counts["quality_dropped"] += 1
                    return out
        step = learner.learn_one(event)
        if step.duplicate:
            self.counts["duplicates"] += 1
            return out
        self.counts["learned"] += 1
        if step.drift is not None:
            out.add("drift-alerts", event.profile.encode(), drift_alert_event(step.drift))
            self.counts["drift_alerts"] += 1
        if step.trigger:
            self.due[event.profile] = step.trigger
        return out

    def source_key(self, topic: str, partition: int) -> str:
        """Where a profile keeps its next offset of one partition; the topic id (when the broker
        gives one) makes a re-created topic a new source instead of one whose offsets went back."""
        tid = self.topic_ids.get(topic)
        return f"kafka:{topic}#{tid}:{partition}" if tid else f"kafka:{topic}:{partition}"

    def _dead_letter(self, out: Outgoing, reason: str, topic: str, partition: int, offset: int,
                     key: bytes | None, value: bytes | None) -> None:
        self.counts["dead_letters"] += 1
        self.dead_letter_reasons[reason.split(":")[0]] += 1
        out.add("dead-letters", key, dead_letter(reason, topic, partition, offset, key,
                                                 value if isinstance(value, (bytes, bytearray)) else None))

    # -- durability ---------------------------------------------------------------------
    def flush(self, profiles: list[str] | None = None) -> int:
        """Save the states of the dirty profiles (atomically); returns how many were saved.

        Raises :class:`StateNotSaved` when a state could not be written (disk full, read-only):
        the profile stays dirty, and the caller must not release the offsets.
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
            if self.runs is not None and (self.runs.busy(profile) or self.runs.full):
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
            self.dirty.add(profile)
            if self.runs is None:
                from learner.online import compute_run

                outcome = compute_run(plan, learner.live, learner.config, learner.ewc, log=self.log)
                self._finished.append(FinishedRun(profile, plan, True, None, None, outcome.duration_s))
                self._local_outcomes[plan.run_id] = outcome
            else:
                self.runs.submit(profile, plan, learner.config.to_dict())
            started.append(profile)
        return started

    def finish_runs(self, now: float | None = None) -> Outgoing:
        """Record the runs that finished: commit accepted versions, publish ModelUpdated for every run."""
        out = Outgoing()
        finished = self.runs.poll() if self.runs is not None else []
        if self.runs is None:
            finished, self._finished = list(self._finished), []
        for run in finished:
            learner = self.learners.get(run.profile)
            if learner is None:
                continue  # the profile moved to another worker meanwhile: its new owner reruns
            if self.runs is None:
                outcome = self._local_outcomes.pop(run.plan.run_id)
            elif run.ok:
                outcome = RunOutcome.from_wire(run.outcome, learner.config)
            else:
                self.log(f"[{run.profile}] run process failed: {run.error}")
                outcome = RunOutcome(False, f"run process failed: {str(run.error).splitlines()[0]}", {}, 0,
                                     run.seconds, aborted=True)
            late_requests = learner.scheduler.requested - self._requests_at_plan.pop(run.profile, set())
            report = learner.finish_run(run.plan, outcome, now)
            for trigger in late_requests:  # asked for while the run computed: not lost
                learner.scheduler.request(trigger)
            status = "accepted" if outcome.accepted else ("aborted" if outcome.aborted else "rejected")
            if report.metrics.get("checkpoint_failed"):
                status = "checkpoint_failed"
                self.dirty.add(run.profile)
                self.retry_at[run.profile] = (now or time.time()) + self.config.worker.checkpoint_retry_s
                self.due[run.profile] = run.plan.trigger
            else:
                self.dirty.discard(run.profile)  # finish_run saved the state
                self.retry_at.pop(run.profile, None)
            self.run_outcomes[status] += 1
            self.run_seconds.append(run.seconds)
            event = model_updated_event({**report.to_dict(), "reason": report.reason})
            out.add("model-updated", run.profile.encode(), event)
            trigger = learner.scheduler.due(now if now is not None else time.time()) or learner.scheduler.pending()
            if trigger and len(learner.recent) >= learner.config.scheduler.min_examples:
                self.due[run.profile] = trigger
        return out

    def cancel_run(self, profile: str) -> None:
        if self.runs is None:
            return
        plan = self.runs.cancel(profile)
        if plan is not None and profile in self.learners:
            self.learners[profile].cancel_run(plan)
            self._requests_at_plan.pop(profile, None)

    def close(self) -> None:
        """Stop every run (nothing partial is left), save every state, release every lock."""
        if self.runs is not None:
            for profile in list(self.runs.running):
                self.cancel_run(profile)
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
