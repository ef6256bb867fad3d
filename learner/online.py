"""``OnlineLearner``: the one object a notebook, a script or the stream worker talks to.

It owns one profile's learner state — reservoir, recent buffer, drift detector,
scheduler — its live model and its registry, and ties them together::

    learn_one(event) → reservoir, recent, drift → scheduler → (auto) consolidate()
    consolidate()    → plan → run (train + gate) → commit a version or record a rejection

Durability: :meth:`save_state` writes ``learner_state.json`` atomically; every accepted
version carries the same snapshot, taken after the commit, and the newer of the two (by
``seq``) wins on load, so a crash between writing the version and the live state loses
nothing and counts nothing twice.

Examples
--------
>>> import tempfile
>>> from learner.config import load_config
>>> cfg = load_config(environ={}, overrides=["scheduler.count=1000", "drift.enabled=false"])
>>> learner = OnlineLearner("alice", cfg, state_dir=tempfile.mkdtemp())
>>> step = learner.learn_one({"v": 1, "profile": "alice", "ts": 0.0, "kind": "note",
...                           "text": "The fig tree needs water on Sundays."})
>>> learner.events_seen, len(learner.reservoir), step.trigger
(1, 1, None)
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from learner.adapted import AdaptedModel
from learner.config import ConfigError, LearnerConfig
from learner.consolidation import FOUNDATION, LORA, Plan, RunAborted, run_consolidation
from learner.data import encode_event, mean_loss
from learner.drift import DRIFTED, KLDriftDetector, ScalarDriftMonitor
from learner.events import InvalidEvent, MemoryEvent, validate_profile
from learner.ewc import EWC
from learner.lock import ProfileLock
from learner.registry import ModelRegistry
from learner.replay import RecentBuffer, ReservoirBuffer, SeenIds, WeightedReservoirBuffer
from learner.scheduler import ConsolidationScheduler
from learner.storage import CorruptStateError, atomic_write_json, read_json, sha256_bytes

__all__ = ["OnlineLearner", "Step", "ConsolidationReport", "STATE_FILE", "load_model_at", "version_config"]

STATE_FILE = "learner_state.json"
# model settings that change the shape of the weights: a version can only be loaded with its own
ARCHITECTURE_KEYS = ("base", "d_model", "n_layers", "n_heads", "d_ff", "lora_r", "target_modules")
STATE_FORMAT = 1
MAX_ALERTS_KEPT = 100


def version_config(registry: ModelRegistry, version: int | None, fallback: LearnerConfig) -> LearnerConfig:
    """The config a version was trained with (device and dtype taken from ``fallback``)."""
    if version is None:
        return fallback
    run = json.loads(registry.read_file(version, "run.json"))
    config = LearnerConfig.from_dict(run["config"])
    config.model.device, config.model.dtype = fallback.model.device, fallback.model.dtype
    return config


def load_model_at(registry: ModelRegistry, version: int | None, config: LearnerConfig) -> AdaptedModel:
    """A model at ``version`` (None = the original base), every file verified before it is read."""
    live = AdaptedModel(config.model)
    if version is None:
        return live
    registry.verify(version)
    entry = registry.entry(version)
    if entry["mode"] == FOUNDATION:
        live.load_base_state(load_safetensors(registry.read_file(version, "model.safetensors")))
        return live
    base_version = entry.get("base_version")
    if base_version:
        registry.verify(base_version)
        live.load_base_state(load_safetensors(registry.read_file(base_version, "model.safetensors")))
    live.load_adapter_state(load_safetensors(registry.read_file(version, "adapter_model.safetensors")))
    return live


def check_architecture(config: LearnerConfig, registry: ModelRegistry) -> None:
    """Refuse settings whose weights would not fit the current version's."""
    current = registry.current_version
    if current is None:
        return
    trained = version_config(registry, current, config).model
    for key in ARCHITECTURE_KEYS:
        ours, theirs = getattr(config.model, key), getattr(trained, key)
        if ours != theirs:
            raise ConfigError(
                f"model.{key} = {ours!r} but version {current} of {registry.data['profile']!r} was trained "
                f"with {theirs!r}: use the same model settings, or `memstream registry reset` first")


@dataclass
class ConsolidationReport:
    """What one consolidation did (the fields of a ModelUpdated event, less the wire ones)."""

    run_id: str
    profile: str
    trigger: str
    mode: str
    accepted: bool
    reason: str
    version: int | None
    parent_version: int | None
    samples_new: int
    samples_replay: int
    steps: int
    duration_s: float
    metrics: dict[str, Any] = field(default_factory=dict)
    base_model: str = ""
    adapter_path: str | None = None
    sha256: str | None = None
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Step:
    """What :meth:`OnlineLearner.learn_one` observed for one event."""

    events_seen: int
    duplicate: bool = False
    drift: dict[str, Any] | None = None
    trigger: str | None = None
    consolidation: ConsolidationReport | None = None


def _event_to_json(event: MemoryEvent) -> dict[str, Any]:
    return event.to_dict()


def _event_from_json(data: dict[str, Any]) -> MemoryEvent:
    return MemoryEvent.from_dict(data)


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
    """

    def __init__(
        self,
        profile: str = "default",
        config: LearnerConfig | None = None,
        state_dir: str | Path | None = None,
        auto_consolidate: bool = True,
        log: Callable[[str], None] | None = None,
    ):
        self.profile = validate_profile(profile)
        self.config = config or LearnerConfig()
        self.state_root = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="memstream-"))
        self.auto_consolidate = auto_consolidate
        self.log = log or (lambda _msg: None)
        cfg = self.config
        reservoir_cls = WeightedReservoirBuffer if cfg.replay.strategy == "surprise" else ReservoirBuffer
        self.reservoir = reservoir_cls(cfg.replay.capacity, cfg.replay.seed)
        self.recent: RecentBuffer[MemoryEvent] = RecentBuffer(cfg.replay.recent_capacity)
        self.seen_ids = SeenIds(cfg.replay.dedupe_window)
        self.duplicates = 0
        self.drift = self._new_detector() if cfg.drift.enabled else None
        self.loss_monitor = ScalarDriftMonitor(cfg.drift.loss_detector, "loss", seed=cfg.drift.seed) \
            if cfg.drift.loss_detector else None
        self.scheduler = ConsolidationScheduler(cfg.scheduler.count, cfg.scheduler.interval_s,
                                                cfg.scheduler.min_examples)
        self.rng = random.Random(cfg.train.seed)
        self.events_seen = 0
        self.seq = 0
        self.sources: dict[str, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self.lock = ProfileLock(self.directory).acquire()  # one writer per profile
        self.registry = ModelRegistry.open(self.state_root, self.profile, self._base_name(),
                                           cfg.registry.keep_versions)
        self.ewc = EWC(cfg.ewc.lam, cfg.ewc.gamma)
        self._live: AdaptedModel | None = None
        self.should_stop: Callable[[], bool] = lambda: False

    # -- construction helpers ----------------------------------------------------------
    def _base_name(self) -> str:
        base = self.config.model.base
        return base if self.config.model.is_default_model else str(Path(base).expanduser().resolve())

    def _new_detector(self) -> KLDriftDetector:
        return KLDriftDetector(**self.config.drift.kl_params())

    @property
    def directory(self) -> Path:
        """This profile's state directory."""
        return self.state_root / self.profile

    # -- learning ----------------------------------------------------------------------
    def learn_one(self, event: MemoryEvent | dict[str, Any]) -> Step:
        """Take one event into the learner state; consolidate if a trigger trips (and auto is on)."""
        if not isinstance(event, MemoryEvent):
            event = MemoryEvent.from_dict(event)
        if event.profile != self.profile:
            raise InvalidEvent(f"event for profile {event.profile!r} sent to the learner of {self.profile!r}")
        if not self.seen_ids.add(event.id):
            self.duplicates += 1  # re-published (ids are content hashes): learned once already
            return Step(events_seen=self.events_seen, duplicate=True)
        surprise = self._surprise(event)
        self.events_seen += 1
        if isinstance(self.reservoir, WeightedReservoirBuffer):
            self.reservoir.add(event, weight=max(surprise, 1e-3) if surprise is not None else 1.0)
        else:
            self.reservoir.add(event)
        self.recent.add(event)
        step = Step(events_seen=self.events_seen)
        if self.drift is not None:
            self.drift.update(event.training_text)
            if self.drift.drift_detected:
                step.drift = self._drift_alert(self.drift.last_report, event.ts)
        if self.loss_monitor is not None and surprise is not None:
            self.loss_monitor.update(surprise)
            if self.loss_monitor.drift_detected and step.drift is None:
                step.drift = self._drift_alert(self.loss_monitor.last_report, event.ts)
        step.trigger = self.scheduler.observe(now=event.ts)
        if step.trigger and self.next_mode == FOUNDATION and step.trigger != "manual" \
                and len(self.recent) < self.config.train.foundation_min_events:
            step.trigger = None  # too little data for a first full-parameter run: keep collecting
        if step.trigger and self.auto_consolidate:
            step.consolidation = self.consolidate(step.trigger, now=event.ts)
        return step

    def learn_many(self, events: Iterable[MemoryEvent | dict[str, Any]]) -> list[Step]:
        """:meth:`learn_one` over many events; returns the steps where something happened."""
        return [s for s in map(self.learn_one, events) if s.drift or s.trigger or s.consolidation]

    def _surprise(self, event: MemoryEvent) -> float | None:
        """The event's loss when a version exists and something uses it (surprise replay, loss detector)."""
        wanted = self.loss_monitor is not None or self.config.replay.strategy == "surprise"
        if not wanted or self.registry.current_version is None:
            return None
        return self.event_loss(event)

    def event_loss(self, event: MemoryEvent) -> float:
        """Loss (nats per target token) of one event under the current version: its surprise."""
        live = self.live
        example = encode_event(event, live.tokenizer, self.config.model.max_seq_len)
        return mean_loss(live.model, [example], live.tokenizer.pad_id, device=live.device)

    def _drift_alert(self, drift_report, ts: float) -> dict[str, Any]:
        report = drift_report.to_dict()
        actions = ["rebase baseline after the next consolidation", "recompute Fisher after the next consolidation"]
        if self.config.scheduler.consolidate_on_drift:
            self.scheduler.request("drift")
            actions.insert(0, "consolidate early")
        alert = {"v": 1, "profile": self.profile, "ts": ts, **report, "action": "; ".join(actions)}
        self.alerts = (self.alerts + [alert])[-MAX_ALERTS_KEPT:]
        self.log(f"[{self.profile}] drift ({report['detector']}): {report['divergence']:.4f} "
                 f"vs threshold {report['threshold']:.4f}")
        return alert

    # -- consolidation -----------------------------------------------------------------
    @property
    def next_mode(self) -> str:
        """``foundation`` for the default model before its first version, else ``lora``."""
        if self.config.model.is_default_model and self.registry.current_version is None:
            return FOUNDATION
        return LORA

    def plan(self, trigger: str) -> Plan:
        """Choose the new, replay and probe examples of the next consolidation."""
        cfg = self.config.train
        new = self.recent.items
        new_ids = {e.id for e in new}
        mode = self.next_mode
        probe = self.reservoir.sample(cfg.probe_size, self.rng, keep=lambda e: e.id not in new_ids)
        if len(probe) < cfg.probe_size // 2 and len(new) > 1:
            # too little old data (first runs): hold part of the new data out as the probe
            held = self.rng.sample(new, min(cfg.probe_size, len(new) // 4) or 1)
            held_ids = {e.id for e in held}
            probe += held
            new = [e for e in new if e.id not in held_ids]
        taken = new_ids | {e.id for e in probe}
        if mode == FOUNDATION:
            replay = [e for e in self.reservoir.items if e.id not in taken]
        else:
            want = round(len(new) * cfg.replay_ratio / (1 - cfg.replay_ratio))
            replay = self.reservoir.sample(want, self.rng, keep=lambda e: e.id not in taken)
        return Plan(trigger=trigger, mode=mode, new=new, replay=replay, probe=probe,
                    parent_version=self.registry.current_version, seed=self.rng.randrange(2**31))

    @property
    def live(self) -> AdaptedModel:
        """The live model at the current version (loaded and verified on first use)."""
        if self._live is None:
            self._live = load_model_at(self.registry, self.registry.current_version, self.config)
        return self._live

    @property
    def model(self) -> torch.nn.Module:
        """The current model (peft-wrapped once LoRA versions exist)."""
        return self.live.model

    @property
    def tokenizer(self):
        return self.live.tokenizer

    def model_at(self, version: int | None) -> AdaptedModel:
        """A separate model at ``version`` (None = the original base), verified; the live one is untouched."""
        return load_model_at(self.registry, version, self.config)

    def _load_ewc(self, version: int | None) -> EWC:
        return load_ewc(self.registry, version, self.config)

    def consolidate(self, trigger: str = "manual", now: float | None = None) -> ConsolidationReport | None:
        """Run one consolidation now, in this process; returns its report (None when there is nothing new)."""
        now = time.time() if now is None else now
        plan = self.start_run(trigger)
        if plan is None:
            return None
        outcome = compute_run(plan, self.live, self.config, self.ewc, self.should_stop, self.log)
        if outcome.aborted_by_stop:
            self.cancel_run(plan)
            raise RunAborted("stop requested")
        return self.finish_run(plan, outcome, now)

    def start_run(self, trigger: str) -> Plan | None:
        """Plan the next consolidation (None when there is nothing new); pair with :meth:`finish_run`
        or :meth:`cancel_run`. The stream worker computes the run in another process meanwhile."""
        if len(self.recent) == 0:
            self.log(f"[{self.profile}] {trigger} consolidation skipped: no new examples")
            return None
        self._rng_before_run = self.rng.getstate()
        plan = self.plan(trigger)
        self.log(f"[{self.profile}] consolidating ({plan.mode}, trigger {trigger}): "
                 f"{len(plan.new)} new + {len(plan.replay)} replay, probe {len(plan.probe)}")
        return plan

    def cancel_run(self, plan: Plan) -> None:
        """Forget a planned run that was stopped: the RNG is as if it never started (a rerun plans the same)."""
        if getattr(self, "_rng_before_run", None) is not None:
            self.rng.setstate(self._rng_before_run)
            self._rng_before_run = None

    def finish_run(self, plan: Plan, outcome: "RunOutcome", now: float | None = None) -> ConsolidationReport:
        """Record a computed run: commit a version when accepted, the reason when not."""
        now = time.time() if now is None else now
        self._rng_before_run = None
        base_version = self._base_version_for(plan)
        if outcome.accepted:
            self.ewc = outcome.ewc if outcome.ewc is not None else self.ewc
            if outcome.live is not None:
                self._live = outcome.live  # computed here: the trained model is the new live one
            else:
                self._live = None  # computed elsewhere: load the committed version on next use
        status = "accepted" if outcome.accepted else ("aborted" if outcome.aborted else "rejected")
        before, ewc_before = self._state_dict(), self.ewc
        try:
            return self._finish(plan, now, outcome.accepted, outcome.reason, status, outcome.metrics,
                                outcome.steps, outcome.duration_s, base_version, outcome.weights)
        except OSError as exc:
            return self._checkpoint_failed(plan, outcome, before, ewc_before, exc)

    def _checkpoint_failed(self, plan: Plan, outcome: "RunOutcome", before: dict[str, Any], ewc_before: EWC,
                           exc: OSError) -> ConsolidationReport:
        """Writing the run's result failed (disk full, read-only): memory goes back to what the disk
        says, the current version stays, the new events wait for the next run."""
        self._restore(before)
        self.ewc = ewc_before
        self._live = None  # a model trained in place is not what the registry names: reload on next use
        current = self.registry.current_version
        why = exc.strerror or str(exc)
        reason = (f"checkpoint failed: {why} ({exc.filename or 'state directory'}); "
                  f"version {current} stays current, the new events wait for the next run")
        self.log(f"[{self.profile}] {reason}")
        return ConsolidationReport(
            run_id=plan.run_id, profile=self.profile, trigger=plan.trigger, mode=plan.mode, accepted=False,
            reason=reason, version=None, parent_version=plan.parent_version, samples_new=len(plan.new),
            samples_replay=len(plan.replay), steps=outcome.steps, duration_s=round(outcome.duration_s, 3),
            metrics={**outcome.metrics, "checkpoint_failed": True}, base_model=self.registry.original_base_model)

    def _base_version_for(self, plan: Plan) -> int | None:
        if plan.mode == FOUNDATION or plan.parent_version is None:
            return None
        parent = self.registry.entry(plan.parent_version)
        return plan.parent_version if parent["mode"] == FOUNDATION else parent.get("base_version")

    def _finish(self, plan: Plan, now: float, accepted: bool, reason: str, status: str,
                metrics: dict[str, Any], steps: int, duration: float,
                base_version: int | None, weights: dict[str, bytes] | None) -> ConsolidationReport:
        covered = {e.id for e in plan.new} | {e.id for e in plan.probe}
        self.recent.remove_where(lambda e: e.id in covered)
        self.scheduler.mark_consolidated(now, examples_covered=len(covered))
        if self.drift is not None and self.drift.state == DRIFTED:
            self.drift.rebase()
        if self.loss_monitor is not None and accepted:
            self.loss_monitor.reset()  # a new version: the loss signal starts afresh
        info = {
            "run_id": plan.run_id,
            "trigger": plan.trigger,
            "mode": plan.mode,
            "samples_trained": len(plan.train_events),
            "samples_new": len(plan.new),
            "samples_replay": len(plan.replay),
            "parent_version": plan.parent_version,
            "base_version": base_version,
            "base_model_used": (f"version {base_version}" if base_version else self.registry.original_base_model),
            "metrics": metrics,
            "steps": steps,
            "duration_s": round(duration, 3),
            "reason": reason,
        }
        report = ConsolidationReport(
            run_id=plan.run_id, profile=self.profile, trigger=plan.trigger, mode=plan.mode,
            accepted=accepted, reason=reason, version=None, parent_version=plan.parent_version,
            samples_new=len(plan.new), samples_replay=len(plan.replay), steps=steps,
            duration_s=round(duration, 3), metrics=metrics, base_model=self.registry.original_base_model,
        )
        if accepted:
            self.seq += 1
            files = self._version_files(plan, info, weights or {})
            snapshot = self._state_dict()
            files["learner_state.json"] = json.dumps(snapshot, sort_keys=True).encode("utf-8")
            version = self.registry.commit_version(files, info)
            report.version = version
            weights = "model.safetensors" if plan.mode == FOUNDATION else "adapter_model.safetensors"
            report.adapter_path = str(self.registry.version_dir(version) / weights)
            report.sha256 = sha256_bytes(files[weights])  # the bytes just committed: no need to re-read them
            self._write_state(snapshot, self.directory)
            self.log(f"[{self.profile}] version {version} accepted: {reason}")
        else:
            self.registry.record_run(info, status)
            self.save_state()
            self.log(f"[{self.profile}] run {status}: {reason}")
        return report

    def _version_files(self, plan: Plan, info: dict[str, Any], weights: dict[str, bytes]) -> dict[str, bytes]:
        files = dict(weights)
        files["metrics.json"] = json.dumps(info["metrics"], indent=2, sort_keys=True).encode("utf-8")
        run = {
            **{k: v for k, v in info.items() if k != "metrics"},
            "profile": self.profile,
            "seed": plan.seed,
            "new_ids": [e.id for e in plan.new],
            "replay_ids": [e.id for e in plan.replay],
            "probe_ids": [e.id for e in plan.probe],
            "config": self.config.to_dict(),
        }
        files["run.json"] = json.dumps(run, indent=2, sort_keys=True).encode("utf-8")
        return files

    # -- persistence -------------------------------------------------------------------
    def _state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "format": STATE_FORMAT,
            "profile": self.profile,
            "seq": self.seq,
            "events_seen": self.events_seen,
            "reservoir": self.reservoir.snapshot(_event_to_json),
            "recent": self.recent.snapshot(_event_to_json),
            "drift": self.drift.snapshot() if self.drift is not None else None,
            "loss_monitor": self.loss_monitor.snapshot() if self.loss_monitor is not None else None,
            "scheduler": self.scheduler.snapshot(),
            "rng_state": [version, list(internal), gauss],
            "sources": dict(self.sources),
            "alerts": self.alerts,
            "seen_ids": self.seen_ids.snapshot(),
            "duplicates": self.duplicates,
        }

    def _write_state(self, snapshot: dict[str, Any], directory: Path) -> None:
        atomic_write_json(Path(directory) / STATE_FILE, snapshot, compact=True)

    def save_state(self, directory: str | Path | None = None) -> Path:
        """Write the learner state atomically (default: this profile's directory)."""
        self.seq += 1
        target = Path(directory) if directory is not None else self.directory
        self._write_state(self._state_dict(), target)
        return target / STATE_FILE

    def load_state(self, directory: str | Path | None = None) -> "OnlineLearner":
        """Load the newest durable state (live file or current version's snapshot)."""
        directory = Path(directory) if directory is not None else self.directory
        live_path = directory / STATE_FILE
        candidates = []
        if live_path.exists():
            candidates.append(read_json(live_path))
        current = self.registry.current_version
        if current is not None:
            self.registry.verify(current)
            candidates.append(json.loads(self.registry.read_file(current, "learner_state.json")))
        if not candidates:
            return self
        check_architecture(self.config, self.registry)
        state = max(candidates, key=lambda s: s.get("seq", 0))  # max keeps the first on a tie: the live file
        self._restore(state)
        self.ewc = self._load_ewc(current)
        self._live = None
        return self

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise CorruptStateError(f"unknown learner state format {state.get('format')!r}")
        if state.get("profile") != self.profile:
            raise CorruptStateError(f"state belongs to profile {state.get('profile')!r}, not {self.profile!r}")
        cfg = self.config
        self.seq = int(state["seq"])
        self.events_seen = int(state["events_seen"])
        kind = state["reservoir"].get("kind")
        expected = "weighted-reservoir" if cfg.replay.strategy == "surprise" else "reservoir"
        if kind != expected:
            raise ConfigError(f"replay.strategy = {cfg.replay.strategy!r} but the saved state of {self.profile!r} "
                              f"holds a {kind!r} buffer: keep the strategy a profile started with")
        reservoir_cls = WeightedReservoirBuffer if kind == "weighted-reservoir" else ReservoirBuffer
        self.reservoir = reservoir_cls.restore(state["reservoir"], _event_from_json)
        self.recent = RecentBuffer.restore(state["recent"], _event_from_json)
        if cfg.drift.enabled:
            self.drift = KLDriftDetector.restore(state["drift"]) if state.get("drift") else self._new_detector()
        if self.loss_monitor is not None and state.get("loss_monitor"):
            self.loss_monitor = ScalarDriftMonitor.restore(state["loss_monitor"])
        self.scheduler = ConsolidationScheduler.restore(
            state["scheduler"], count=cfg.scheduler.count, interval_s=cfg.scheduler.interval_s,
            min_examples=cfg.scheduler.min_examples)
        version, internal, gauss = state["rng_state"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.sources = {k: int(v) for k, v in state.get("sources", {}).items()}
        self.alerts = list(state.get("alerts", []))
        if state.get("seen_ids"):
            self.seen_ids = SeenIds.restore(state["seen_ids"], capacity=cfg.replay.dedupe_window)
        self.duplicates = int(state.get("duplicates", 0))

    def rollback(self, version: int) -> None:
        """Make a kept version current again: model and EWC state follow (data seen stays seen)."""
        self.registry.rollback(version)
        self._live = None
        self.ewc = self._load_ewc(version)

    def reset(self) -> None:
        """Back to the original base model; the next consolidation starts afresh (a foundation run
        for the default model). The replay buffer and counters stay: the events were still seen."""
        self.registry.reset()
        self._live = None
        self.ewc = EWC(self.config.ewc.lam, self.config.ewc.gamma)

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
        return cls(profile, config, state_dir, **kwargs).load_state()

    # -- using the model ---------------------------------------------------------------
    def generate(self, prompt: str, max_new_tokens: int = 160, temperature: float = 0.8,
                 top_k: int = 40, seed: int = 0) -> str:
        """Sample a continuation of ``prompt`` (as a question) from the current version."""
        from learner.generate import sample

        return sample(self.live, prompt, max_new_tokens, temperature, top_k, seed)


@dataclass
class RunOutcome:
    """What computing a run produced: the verdict and, when accepted, the bytes of its weight files."""

    accepted: bool
    reason: str
    metrics: dict[str, Any]
    steps: int
    duration_s: float
    weights: dict[str, bytes] | None = None
    ewc: EWC | None = None
    live: AdaptedModel | None = None
    aborted: bool = False
    aborted_by_stop: bool = False

    def to_wire(self) -> dict[str, Any]:
        """Plain data to send back from a worker process (the live model stays behind)."""
        return {"accepted": self.accepted, "reason": self.reason, "metrics": self.metrics, "steps": self.steps,
                "duration_s": self.duration_s, "weights": self.weights, "aborted": self.aborted,
                "aborted_by_stop": self.aborted_by_stop}

    @classmethod
    def from_wire(cls, data: dict[str, Any], config: LearnerConfig) -> "RunOutcome":
        outcome = cls(**data)
        if outcome.accepted and outcome.weights and "ewc.safetensors" in outcome.weights:
            outcome.ewc = ewc_from_bytes(outcome.weights["ewc.safetensors"], config)
        elif outcome.accepted:
            outcome.ewc = EWC(config.ewc.lam, config.ewc.gamma)
        return outcome


def ewc_from_bytes(blob: bytes, config: LearnerConfig) -> EWC:
    """EWC state from the bytes of an ``ewc.safetensors`` file (tensors and header metadata)."""
    from safetensors import safe_open

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as fh:  # safe_open reads the header from a file
        fh.write(blob)
        fh.flush()
        with safe_open(fh.name, framework="pt") as handle:
            metadata = handle.metadata()
    return EWC.from_state(load_safetensors(blob), metadata, lam=config.ewc.lam, gamma=config.ewc.gamma)


def weight_files(plan: Plan, live: AdaptedModel, ewc: EWC) -> dict[str, bytes]:
    """The weight files of a version: full model (foundation) or adapter plus EWC state (LoRA)."""
    files: dict[str, bytes] = {}
    if plan.mode == FOUNDATION:
        files["model.safetensors"] = save_safetensors(live.base_state(), metadata={"format": "pt"})
        files["config.json"] = live.base.model.config.to_json_string().encode("utf-8")
    else:
        files["adapter_model.safetensors"] = save_safetensors(live.adapter_state(), metadata={"format": "pt"})
        files["adapter_config.json"] = json.dumps(live.adapter_config_dict(), indent=2).encode("utf-8")
        if ewc.fisher:
            files["ewc.safetensors"] = save_safetensors(ewc.state_tensors(), metadata=ewc.state_metadata())
    return files


def compute_run(plan: Plan, live: AdaptedModel, config: LearnerConfig, ewc: EWC,
                should_stop: Callable[[], bool] = lambda: False,
                log: Callable[[str], None] = lambda _m: None) -> RunOutcome:
    """Train ``live`` on ``plan`` with the EWC penalty; when accepted, fold the new Fisher into
    ``ewc`` and serialise the weights. Writes nothing to disk."""
    try:
        result = run_consolidation(plan, live, config, ewc, should_stop, log)
    except RunAborted as exc:
        if str(exc) == "stop requested":
            return RunOutcome(False, str(exc), {}, 0, 0.0, aborted=True, aborted_by_stop=True)
        return RunOutcome(False, str(exc), {}, 0, 0.0, aborted=True)
    if not result.accepted:
        return RunOutcome(False, result.reason, result.metrics, result.steps, result.duration_s)
    if result.fisher is not None:
        anchor = {n: p.detach() for n, p in live.trainable_parameters(False).items()}
        ewc.accumulate(result.fisher, anchor)
    return RunOutcome(True, result.reason, result.metrics, result.steps, result.duration_s,
                      weights=weight_files(plan, live, ewc), ewc=ewc, live=live)


def compute_run_for_profile(state_root: str, profile: str, config_dict: dict[str, Any],
                            plan: Plan) -> dict[str, Any]:
    """Compute a run in a fresh process from what is on disk: the parent version's model and EWC
    state, read (and verified) without taking the profile's writer lock. Returns plain data."""
    config = LearnerConfig.from_dict(config_dict)
    registry = ModelRegistry.open(state_root, profile, "", writer=False) \
        if (Path(state_root) / profile / "registry.json").exists() else None
    if registry is None:
        live = load_model_at(None, None, config)
        ewc = EWC(config.ewc.lam, config.ewc.gamma)
    else:
        live = load_model_at(registry, plan.parent_version, config)
        ewc = load_ewc(registry, plan.parent_version, config)
    outcome = compute_run(plan, live, config, ewc)
    return outcome.to_wire()


def load_ewc(registry: ModelRegistry, version: int | None, config: LearnerConfig) -> EWC:
    """The EWC state saved with ``version`` (empty for the base or a version without one)."""
    if version is None or "ewc.safetensors" not in registry.verify(version):
        return EWC(config.ewc.lam, config.ewc.gamma)
    return ewc_from_bytes((registry.version_dir(version) / "ewc.safetensors").read_bytes(), config)
