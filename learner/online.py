"""``OnlineLearner``: the one object a notebook, a script or the stream worker talks to.

A thin facade over one profile's pieces::

    learn_one(event) → state (reservoir, recent, drift, scheduler) → (auto) consolidate()
    consolidate()    → plan → trainer (train + gate) → finish_run: commit a version or record why not

- :mod:`learner.memory.state` — what the learner keeps between events, and its files;
- :mod:`learner.training.trainer` — the loaded base model the runs train on (shared by every profile of
  the process);
- :mod:`learner.training.plan` — a run's plan and its one result type;
- :mod:`learner.store.versions` and :mod:`learner.store.registry` — versions on disk.

With ``publish=True`` (the stream worker) what must be published — a ModelUpdated event for every
run, drift alerts, rollbacks and resets — goes into the state's outbox, written with the state,
and is sent and marked sent by the worker.

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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from learner.model.bases import resolve_base
from learner.config import LearnerConfig
from learner.drift.kl import DRIFTED
from contracts.events import InvalidEvent, MemoryEvent, validate_profile
from learner.store.lock import ProfileLock
from learner.policy.quality import QualityGate
from learner.store.registry import ModelRegistry
from learner.memory.replay import WeightedReservoirBuffer
from learner.training.plan import Plan, RunResult
from learner.memory.state import STATE_FILE, LearnerState, read_newest_state, write_state
from learner.store.versions import FOUNDATION, LORA, check_architecture, history_entry, json_bytes, run_record, weight_file

if TYPE_CHECKING:
    from learner.model.adapted import AdaptedModel
    from learner.training.ewc import EWC

__all__ = ["OnlineLearner", "Step", "STATE_FILE"]


@dataclass
class Step:
    """What :meth:`OnlineLearner.learn_one` observed for one event."""

    events_seen: int
    duplicate: bool = False
    quality: str | None = None  # why the quality gate flagged it (None: it passed)
    dropped: bool = False  # flagged and not learned (quality.mode = drop)
    drift: dict[str, Any] | None = None
    trigger: str | None = None
    consolidation: RunResult | None = None


def _state_property(name: str, doc: str):
    return property(lambda self: getattr(self.state, name), doc=doc)


class OnlineLearner:
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

    @property
    def events_seen(self) -> int:
        return self.state.events_seen

    @property
    def duplicates(self) -> int:
        return self.state.duplicates

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
            return Step(events_seen=state.events_seen, quality=flagged, dropped=True)
        if not state.seen_ids.add(event.id):
            state.duplicates += 1  # re-published (ids are content hashes): learned once already
            return Step(events_seen=state.events_seen, duplicate=True)
        surprise = self._surprise(event)
        state.events_seen += 1
        clock = state.advance_clock(event.ts)
        if isinstance(state.reservoir, WeightedReservoirBuffer):
            state.reservoir.add(event, weight=max(surprise, 1e-3) if surprise is not None else 1.0)
        else:
            state.reservoir.add(event)
        state.recent.add(event)
        step = Step(events_seen=state.events_seen, quality=flagged)
        if state.drift is not None:
            state.drift.update(event.training_text)
            if state.drift.drift_detected:
                step.drift = self._drift_alert(state.drift.last_report, event.ts)
        if state.loss_monitor is not None and surprise is not None:
            state.loss_monitor.update(surprise)
            if state.loss_monitor.drift_detected and step.drift is None:
                step.drift = self._drift_alert(state.loss_monitor.last_report, event.ts)
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

    def event_loss(self, event: MemoryEvent) -> float:
        """Loss (nats per target token) of one event under the current version: its surprise."""
        from learner.model.losses import mean_loss

        live = self.live
        return mean_loss(live.model, [live.encoder.encode(event)], live.tokenizer.pad_id, device=live.device)

    def _drift_alert(self, drift_report, ts: float) -> dict[str, Any]:
        report = drift_report.to_dict()
        actions = ["rebase baseline after the next accepted consolidation",
                   "recompute Fisher after the next consolidation"]
        if self.config.scheduler.consolidate_on_drift:
            self.state.scheduler.request("drift")
            actions.insert(0, "consolidate early")
        alert = {"v": 1, "profile": self.profile, "ts": ts, **report, "action": "; ".join(actions)}
        self.state.remember_alert(alert)
        if self.publish:
            self.state.outbox.add("drift-alerts", self.profile, alert,
                                  f"{self.profile}/drift/{report['detector']}/{self.state.events_seen}")
        self.log(f"[{self.profile}] drift ({report['detector']}): {report['divergence']:.4f} "
                 f"vs threshold {report['threshold']:.4f}")
        return alert

    # -- consolidation -----------------------------------------------------------------
    @property
    def next_mode(self) -> str:
        """``foundation`` for the byte model before its first version, else ``lora``."""
        if self.config.model.is_byte_model and self.registry.current_version is None:
            return FOUNDATION
        return LORA

    def plan(self, trigger: str) -> Plan:
        """Choose the new, replay and probe examples of the next consolidation.

        The probe (old memories held out of training, for the gate) takes at most a quarter of what is
        old, so that replay keeps the rest; with fewer than four old memories there is none (the first
        run of a pretrained base is judged by what it keeps of the base), except for the byte model's
        foundation, which holds part of its new data out. New events a rejected run gave back make this
        the second attempt: more replay (``train.retry_replay_ratio``) and a lower learning rate
        (``train.retry_lr_scale``)."""
        cfg, state = self.config.train, self.state
        new = state.recent.items
        new_ids = {e.id for e in new}
        mode = self.next_mode
        retry = bool(state.retried & new_ids)
        old = sum(1 for e in state.reservoir.items if e.id not in new_ids)
        probe = state.reservoir.sample(min(cfg.probe_size, old // 4), state.rng, keep=lambda e: e.id not in new_ids) \
            if old >= 16 else []
        if mode == FOUNDATION and len(probe) < cfg.probe_size // 2 and len(new) > 1:
            # a first full-parameter run: hold part of the new data out as the probe
            held = state.rng.sample(new, min(cfg.probe_size, len(new) // 4) or 1)
            held_ids = {e.id for e in held}
            probe += held
            new = [e for e in new if e.id not in held_ids]
        taken = new_ids | {e.id for e in probe}
        if mode == FOUNDATION:
            replay = [e for e in state.reservoir.items if e.id not in taken]
        else:
            ratio = max(cfg.replay_ratio, cfg.retry_replay_ratio) if retry else cfg.replay_ratio
            want = round(len(new) * ratio / (1 - ratio))
            replay = state.reservoir.sample(want, state.rng, keep=lambda e: e.id not in taken)
        return Plan(trigger=trigger, mode=mode, new=new, replay=replay, probe=probe,
                    parent_version=self.registry.current_version, seed=state.rng.randrange(2**31),
                    clock=state.clock or 0.0, attempt=2 if retry else 1,
                    lr_scale=cfg.retry_lr_scale if retry else 1.0)

    def consolidate(self, trigger: str = "manual") -> RunResult | None:
        """Run one consolidation now, in this process; None when there is nothing new.

        A stop request (:attr:`should_stop`) ends it with status ``stopped``: nothing is written,
        its events wait for the next run."""
        plan = self.start_run(trigger)
        if plan is None:
            return None
        result = self.trainer.run(plan, self.registry, self.config, self.profile, self.should_stop, self.log)
        return self.finish_run(plan, result)

    def start_run(self, trigger: str) -> Plan | None:
        """Plan the next consolidation (None when there is nothing new); pair with :meth:`finish_run`
        or :meth:`cancel_run`. The stream worker computes the run in its trainer process meanwhile."""
        if len(self.state.recent) == 0:
            self.log(f"[{self.profile}] {trigger} consolidation skipped: no new examples")
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
            self._record(plan, result)
        except OSError as exc:
            self._checkpoint_failed(result, before, exc)
        return result

    def _record(self, plan: Plan, result: RunResult) -> None:
        state = self.state
        new_ids = {e.id for e in plan.new} | {e.id for e in plan.probe}
        give_back = result.status in ("rejected", "aborted") and plan.attempt == 1
        if give_back:
            state.retried |= {e.id for e in state.recent.items if e.id in new_ids}
            covered = 0  # the events stay new for one more run
        else:
            covered = state.recent.remove_where(lambda e: e.id in new_ids)
            state.retried -= new_ids
        state.scheduler.mark_consolidated(plan.clock, examples_covered=covered)
        if result.accepted:
            if state.drift is not None and state.drift.state == DRIFTED:
                state.drift.rebase()  # the run that covered the new distribution was accepted
            if state.loss_monitor is not None:
                state.loss_monitor.reset()  # a new version: the loss signal starts afresh
        info = history_entry(self.registry, plan, result)
        state.seq += 1
        if result.accepted:
            version = self.registry.data["versioning"]["next_version"]
            result.version = version
            weights = weight_file(plan.mode)
            result.adapter_path = f"{self.profile}/versions/v{version:04d}/{weights}"
            from learner.store.storage import sha256_bytes

            result.sha256 = sha256_bytes(result.files[weights])
            self._queue_update(result)
            files = dict(result.files)
            files["run.json"] = run_record(plan, info, self.profile, self.config.learner_config())
            files["metrics.json"] = json_bytes(result.metrics)
            snapshot = state.snapshot()
            files[STATE_FILE] = json_bytes(snapshot, compact=True)
            committed = self.registry.commit_version(files, info)
            if committed != version:
                raise RuntimeError(f"the registry committed version {committed}, expected {version}")
            write_state(self.directory, snapshot)
            self._adopt_trained_weights(plan, committed)
            self.log(f"[{self.profile}] version {committed} accepted: {result.reason}")
        else:
            self.registry.record_run(info, result.status)
            self._queue_update(result)
            write_state(self.directory, state.snapshot())
            again = " (its new events get one more run)" if give_back else ""
            self.log(f"[{self.profile}] run {result.status}: {result.reason}{again}")
        result.files = None  # written: the bytes are no longer needed

    def _adopt_trained_weights(self, plan: Plan, version: int) -> None:
        """The in-process trainer holds exactly the committed weights: say so, to skip reloading them."""
        from learner.training.trainer import shared_trainer

        live = shared_trainer(self.config.model).live
        if live.tag == ("trained", plan.run_id):
            live.tag = (str(self.registry.directory), version, self.registry.entry(version).get("manifest_sha256"))
            if plan.mode == FOUNDATION:
                live.base_tag = live.tag

    def _queue_update(self, result: RunResult) -> None:
        if self.publish:
            event = {"v": 1, **result.report(), "action": "train"}
            self.state.outbox.add("model-updated", self.profile, event, f"{self.profile}/run/{result.run_id}")

    def _checkpoint_failed(self, result: RunResult, before: dict[str, Any], exc: OSError) -> None:
        """Writing the run's result failed (disk full, read-only): memory goes back to what the disk
        says, the current version stays, the new events wait for the next run."""
        self.state.restore(before)  # a model trained in this process keeps its "trained" tag: reloaded on next use
        current = self.registry.current_version
        why = exc.strerror or str(exc)
        result.status = "checkpoint_failed"
        result.reason = (f"checkpoint failed: {why} ({exc.filename or 'state directory'}); "
                         f"version {current} stays current, the new events wait for the next run")
        result.version = result.adapter_path = result.sha256 = None
        result.files = None  # the caller says so (the worker publishes it at once: it is not state)
        self.log(f"[{self.profile}] {result.reason}")

    # -- the model ---------------------------------------------------------------------
    @property
    def trainer(self):
        """The trainer (loaded base) this process shares between its profiles."""
        from learner.training.trainer import shared_trainer

        return shared_trainer(self.config.model)

    @property
    def live(self) -> "AdaptedModel":
        """The process's loaded model, holding this profile's current version (verified when loaded).

        The model is shared by every profile of the process: each access puts this profile's
        version on it (nothing is read when it already holds it)."""
        return self.trainer.checkout(self.registry, self.registry.current_version, self.config)

    @property
    def model(self):
        """The current model (peft-wrapped once LoRA versions exist)."""
        return self.live.model

    @property
    def tokenizer(self):
        return self.live.tokenizer

    @property
    def ewc(self) -> "EWC":
        """The EWC state saved with the current version (read from disk)."""
        from learner.store.versions import load_ewc

        return load_ewc(self.registry, self.registry.current_version, self.config)

    def model_at(self, version: int | None) -> "AdaptedModel":
        """A separate model at ``version`` (None = the original base), verified; the shared one is untouched."""
        from learner.store.versions import load_model_at

        return load_model_at(self.registry, version, self.config)

    def generate(self, prompt: str, max_new_tokens: int = 96, temperature: float = 0.0,
                 top_k: int = 40, seed: int = 0) -> str:
        """The current version's answer to ``prompt`` (greedy by default)."""
        return self.answer([prompt], max_new_tokens, temperature, top_k, seed)[0]

    def answer(self, prompts: list[str], max_new_tokens: int = 96, temperature: float = 0.0,
               top_k: int = 40, seed: int = 0) -> list[str]:
        """The current version's answers to many prompts, in batches."""
        from learner.model.generation import answer

        return answer(self.live, prompts, max_new_tokens, temperature, top_k, seed)

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
        """Back to the original base model; the next consolidation starts afresh (a foundation run
        for the byte model). The replay buffer and counters stay: the events were still seen."""
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


def action_event(registry: ModelRegistry, action: str, version: int | None) -> dict[str, Any]:
    """The ModelUpdated event of a rollback or reset: the version inference should serve now
    (None and no adapter: the original base)."""
    entry = registry.entry(version) if version is not None else {}
    profile = registry.data["profile"]
    adapter_path, sha = None, None
    if version is not None:
        weights = weight_file(entry["mode"])
        adapter_path = f"{profile}/versions/v{version:04d}/{weights}"
        sha = registry.verify(version)[weights]
    return {"v": 1, "profile": profile, "action": action, "version": version, "parent_version": None,
            "run_id": None, "ts": time.time(), "base_model": registry.original_base_model,
            "adapter_path": adapter_path, "sha256": sha, "trigger": "manual", "mode": entry.get("mode"),
            "samples_new": 0, "samples_replay": 0, "steps": 0, "duration_s": 0.0, "metrics": {}, "accepted": True,
            "status": "accepted", "reason": f"{action} to {'v' + str(version) if version else 'the original base'}"}
