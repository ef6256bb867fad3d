"""``OnlineLearner``: the one object a notebook, a script or the stream worker talks to.

A thin facade over one profile's pieces::

    learn_one(event) → state (reservoir, recent, drift, scheduler) → (auto) consolidate()
    consolidate()    → plan → trainer (train + gate) → finish_run: commit a version or record why not

The pieces live in their families (:mod:`learner.memory.state`, :mod:`learner.training.planning`,
:mod:`learner.store.commit`, :mod:`learner.model.profile`). With ``publish=True`` (the worker) each
ModelUpdated event and drift alert goes to the state's outbox, saved with the state.

Examples
--------
>>> import tempfile
>>> from learner.config import load_config
>>> cfg = load_config(environ={}, overrides=["model.base=memstream-byte", "scheduler.count=1000",
...                                          "drift.enabled=false"])
>>> learner = OnlineLearner("alice", cfg, state_dir=tempfile.mkdtemp())
>>> step = learner.learn_one({"profile": "alice", "ts": 0.0, "kind": "note",
...                           "text": "The fig tree needs water on Sundays."})
>>> learner.events_seen, len(learner.reservoir), step.trigger
(1, 1, None)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

from learner.model.bases import resolve_base
from learner.config import LearnerConfig
from contracts.events import InvalidEvent, MemoryEvent, validate_profile
from learner.store.lock import ProfileLock
from learner.policy.quality import QualityGate
from learner.store.registry import ModelRegistry
from learner.training.plan import Plan, RunResult
from learner.types import Step
from learner.training.planning import plan_run
from learner.model.profile import ProfileModel
from learner.policy.drift_response import respond_to_drift
from learner.store.commit import action_event, checkpoint_failed, record_run
from learner.memory.state import STATE_FILE, LearnerState, read_newest_state, write_state
from learner.store.versions import FOUNDATION, LORA, check_architecture

__all__ = ["OnlineLearner", "Step", "STATE_FILE"]


def _state_property(name: str, doc: str):
    return property(lambda self: getattr(self.state, name), doc=doc)


class OnlineLearner(ProfileModel):
    """Continual learner of one profile.

    Parameters
    ----------
    profile
        The profile name (a directory name under ``state_dir``).
    config
        Component settings; defaults when omitted.
    state_dir
        Root of the state directory (one subdirectory per profile). Omitted: a temporary
        directory, which is not kept.
    auto_consolidate
        Run a consolidation inside :meth:`learn_one` when a trigger trips. The stream
        worker sets this to False and runs consolidations off the ingest path.
    log
        Where progress lines go (default: nowhere).
    publish
        Keep what must be published in the state's outbox (the stream worker does).
    """

    def __init__(
        self,
        profile: str = "default",
        config: LearnerConfig | None = None,
        state_dir: str | Path | None = None,
        auto_consolidate: bool = True,
        log: Callable[[str], None] | None = None,
        publish: bool = False,
    ):
        self.profile = validate_profile(profile)
        self.config = config or LearnerConfig()
        self.state_root = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="memstream-"))
        self.auto_consolidate = auto_consolidate
        self.log = log or (lambda _msg: None)
        self.publish = publish
        self.state = LearnerState(self.profile, self.config)
        base_name = resolve_base(self.config.model.base).name
        self.lock = ProfileLock(self.directory).acquire()  # one writer per profile
        try:
            self.registry = ModelRegistry.open(self.state_root, self.profile, base_name,
                                               self.config.registry.keep_versions)
        except BaseException:
            self.lock.release()
            raise
        self.quality = QualityGate(self.config.quality.min_chars) if self.config.quality.mode != "off" else None
        self.should_stop: Callable[[], bool] = lambda: False
        self._rng_before_run: Any = None

    reservoir = _state_property("reservoir", "The replay reservoir.")
    recent = _state_property("recent", "Events since the last run (bounded).")
    drift = _state_property("drift", "The KL drift detector (None when off).")
    loss_monitor = _state_property("loss_monitor", "The optional loss-based detector.")
    scheduler = _state_property("scheduler", "When the next run is due.")
    sources = _state_property("sources", "Next offset (or line) per input source.")
    alerts = _state_property("alerts", "The last drift alerts.")
    outbox = _state_property("outbox", "Events still to publish.")
    seen_ids = _state_property("seen_ids", "Window of recent event ids (re-publications are skipped).")

    events_seen = _state_property("events_seen", "Events learned (duplicates and dropped ones aside).")
    duplicates = _state_property("duplicates", "Re-published events skipped.")

    @property
    def directory(self) -> Path:
        """This profile's state directory."""
        return self.state_root / self.profile

    # -- learning ----------------------------------------------------------------------
    def learn_one(self, event: MemoryEvent | dict[str, Any]) -> Step:
        """Take one event into the learner state; consolidate if a trigger trips (and auto is on).

        A dict gets what can be filled in (``v``, ``ts`` = now, ``id`` from its content), as in every
        entry point (:meth:`contracts.events.MemoryEvent.build`)."""
        if not isinstance(event, MemoryEvent):
            event = MemoryEvent.build(event)
        if event.profile != self.profile:
            raise InvalidEvent(f"event for profile {event.profile!r} sent to the learner of {self.profile!r}")
        state = self.state
        flagged = self.quality.check(event) if self.quality is not None else None
        if flagged is not None and self.config.quality.mode == "drop":
            state.memories.observe(event)  # counted as it arrives: a dropped event is not deduplicated
            return Step(events_seen=state.events_seen, quality=flagged, dropped=True)
        if not state.seen_ids.add(event.id):
            state.duplicates += 1  # re-published (ids are content hashes): learned once already
            return Step(events_seen=state.events_seen, duplicate=True)
        surprise = self._surprise(event)
        state.remember(event, surprise)
        clock = state.advance_clock(event.ts)
        step = Step(events_seen=state.events_seen, quality=flagged)
        if state.drift is not None:
            state.drift.update(event.training_text)
            if state.drift.drift_detected:
                step.drift = respond_to_drift(state, state.drift.last_report, event.ts, self.publish, self.log)
        if state.loss_monitor is not None and surprise is not None:
            state.loss_monitor.update(surprise)
            if state.loss_monitor.drift_detected and step.drift is None:
                step.drift = respond_to_drift(state, state.loss_monitor.last_report, event.ts, self.publish, self.log)
        step.trigger = state.scheduler.observe(now=clock)
        if step.trigger and self.next_mode == FOUNDATION and step.trigger != "manual" \
                and len(state.recent) < self.config.train.foundation_min_events:
            step.trigger = None  # too little data for a first full-parameter run: keep collecting
        if step.trigger and self.auto_consolidate:
            step.consolidation = self.consolidate(step.trigger)
        return step

    def learn_many(self, events: Iterable[MemoryEvent | dict[str, Any]]) -> list[Step]:
        """:meth:`learn_one` over many events; returns the steps where something happened."""
        return [s for s in map(self.learn_one, events) if s.drift or s.trigger or s.consolidation]

    def _surprise(self, event: MemoryEvent) -> float | None:
        """The event's loss when a version exists and something uses it (surprise replay, loss detector)."""
        wanted = self.state.loss_monitor is not None or self.config.replay.strategy == "surprise"
        if not wanted or self.registry.current_version is None:
            return None
        return self.event_loss(event)

    # -- consolidation -----------------------------------------------------------------
    @property
    def next_mode(self) -> str:
        """``foundation`` for the byte model before its first version, else ``lora``."""
        if self.config.model.is_byte_model and self.registry.current_version is None:
            return FOUNDATION
        return LORA

    def plan(self, trigger: str) -> Plan:
        """The new, replay and probe examples of the next run (:func:`learner.training.planning.plan_run`)."""
        return plan_run(self.state, self.config.train, trigger, self.next_mode, self.registry.current_version)

    def consolidate(self, trigger: str = "manual") -> RunResult | None:
        """Run one consolidation now, in this process; None when there is nothing new.

        A stop request (:attr:`should_stop`) ends it with status ``stopped``: nothing is written,
        its events wait for the next run."""
        plan = self.start_run(trigger)
        if plan is None:
            return None
        result = self.trainer.run(plan, self.registry, self.config, self.profile, self.should_stop, self.log)
        return self.finish_run(plan, result)

    def consolidate_runs(self, trigger: str = "manual") -> list[RunResult]:
        """:meth:`consolidate`, and at once the second attempt of its events when the gate refused the
        first (``train.retry_replay_ratio``, ``train.retry_lr_scale``): every run's result, in order."""
        results = []
        while (result := self.consolidate(trigger)) is not None:
            results.append(result)
            if not (trigger := self.state.scheduler.retrying):
                break
        return results

    def start_run(self, trigger: str) -> Plan | None:
        """Plan the next consolidation (None when there is nothing new); pair with :meth:`finish_run`
        or :meth:`cancel_run`. The stream worker computes the run in its trainer process meanwhile."""
        if len(self.state.recent) == 0:
            self.log(f"[{self.profile}] {trigger} consolidation skipped: no new examples")
            self.state.scheduler.drop_retry()
            return None
        self._rng_before_run = self.state.rng.getstate()
        plan = self.plan(trigger)
        self.log(f"[{self.profile}] consolidating ({plan.mode}, trigger {trigger}"
                 f"{', second attempt' if plan.attempt > 1 else ''}): "
                 f"{len(plan.new)} new + {len(plan.replay)} replay, probe {len(plan.probe)}")
        return plan

    def cancel_run(self, plan: Plan) -> None:
        """Forget a planned run that was stopped: the RNG is as if it never started (a rerun plans the same)."""
        if self._rng_before_run is not None:
            self.state.rng.setstate(self._rng_before_run)
            self._rng_before_run = None

    def finish_run(self, plan: Plan, result: RunResult) -> RunResult:
        """Record a computed run: commit a version when accepted, the reason when not; returns the
        result with its version and paths. A version that cannot be written (disk full, read-only)
        leaves memory as the disk says, with status ``checkpoint_failed``."""
        if result.status == "stopped":
            self.cancel_run(plan)
            self.log(f"[{self.profile}] run {plan.run_id} stopped: its events wait for the next run")
            return result
        self._rng_before_run = None
        result.base_model = self.registry.original_base_model
        before = self.state.snapshot()
        try:
            record_run(self.registry, self.state, plan, result, self.config, self.publish, self.log)
        except OSError as exc:
            checkpoint_failed(self.registry, self.state, result, before, exc, self.log)
        return result

    # -- persistence -------------------------------------------------------------------
    def save_state(self) -> Path:
        """Write the learner state atomically; returns its path."""
        self.state.seq += 1
        return write_state(self.directory, self.state.snapshot())

    def load_state(self) -> "OnlineLearner":
        """Load the newest durable state (live file or current version's snapshot)."""
        state = read_newest_state(self.directory, self.registry)
        if state is None:
            return self
        check_architecture(self.config, self.registry)
        self.state.restore(state)
        return self

    def rollback(self, version: int) -> None:
        """Make a kept version current again (data seen stays seen); published when ``publish``."""
        self.registry.rollback(version)
        self._queue_action("rollback", version)
        self.save_state()

    def reset(self) -> None:
        """Back to the original base (the byte model's next run is a foundation); seen events stay seen."""
        self.registry.reset()
        self._queue_action("reset", None)
        self.save_state()

    def _queue_action(self, action: str, version: int | None) -> None:
        if self.publish:
            self.state.outbox.add("model-updated", self.profile, action_event(self.registry, action, version),
                                  f"{self.profile}/{action}/{len(self.registry.data['actions'])}")

    def close(self) -> None:
        """Release the profile's writer lock (state is not saved: call :meth:`save_state` first)."""
        self.lock.release()

    def __enter__(self) -> "OnlineLearner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @classmethod
    def open(cls, state_dir: str | Path, profile: str, config: LearnerConfig | None = None,
             **kwargs: Any) -> "OnlineLearner":
        """Create the learner of ``profile`` and load whatever state it has under ``state_dir``."""
        learner = cls(profile, config, state_dir, **kwargs)
        try:
            return learner.load_state()
        except BaseException:
            learner.close()
            raise
