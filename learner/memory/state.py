"""One profile's learner state — everything it keeps between events — and its files.

The state is what must be on disk before the Kafka offsets it covers are committed: the replay
reservoir, the events since the last run, the event-id window, the drift detectors, the
scheduler's counters, the random generator, the learner's clock, the next offset of each source
it reads, and the **outbox** of events it still has to publish.

Durability: :func:`write_state` replaces ``learner_state.json`` atomically; every accepted
version carries the snapshot taken with it, and :func:`read_newest_state` returns the newer of
the two (by ``seq``), so a crash between writing a version and the live file loses nothing and
counts nothing twice.

Examples
--------
>>> from learner.config import load_config
>>> state = LearnerState("alice", load_config(environ={}))
>>> state.advance_clock(1_700_000_000.0), state.advance_clock(1_600_000_000.0)  # a backfilled event
(1700000000.0, 1700000000.0)
>>> box = Outbox()
>>> box.add("drift-alerts", "alice", {"profile": "alice", "divergence": 0.4}, event_id="alice/drift/1")
'alice/drift/1'
>>> [e["event"]["id"] for e in box.pending()], box.mark_sent(["alice/drift/1"]), len(box)
(['alice/drift/1'], 1, 0)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from learner.config import ConfigError, LearnerConfig
from learner.drift.kl import KLDriftDetector
from learner.drift.scalar import ScalarDriftMonitor
from contracts.events import MemoryEvent
from learner.store.registry import ModelRegistry
from learner.memory.replay import RecentBuffer, ReservoirBuffer, WeightedReservoirBuffer
from learner.memory.outbox import Outbox
from learner.memory.curator import MemoryCounts
from learner.memory.dedupe import SeenIds
from learner.policy.scheduler import ConsolidationScheduler
from learner.store.storage import CorruptStateError, atomic_write_json, read_json

__all__ = ["STATE_FILE", "LearnerState", "read_newest_state", "write_state"]

STATE_FILE = "learner_state.json"
STATE_FORMAT = 2
MAX_ALERTS_KEPT = 100


def _event_to_json(event: MemoryEvent) -> dict[str, Any]:
    return event.to_dict()


def _event_from_json(data: dict[str, Any]) -> MemoryEvent:
    return MemoryEvent.from_dict(data)


class LearnerState:
    """The state of one profile's learner (fresh from ``config``; :meth:`restore` loads a snapshot)."""

    def __init__(self, profile: str, config: LearnerConfig):
        self.profile = profile
        self.config = config
        cfg = config
        reservoir_cls = WeightedReservoirBuffer if cfg.replay.strategy == "surprise" else ReservoirBuffer
        self.reservoir = reservoir_cls(cfg.replay.capacity, cfg.replay.seed)
        self.recent: RecentBuffer[MemoryEvent] = RecentBuffer(cfg.replay.recent_capacity)
        self.seen_ids = SeenIds(cfg.replay.dedupe_window)
        self.duplicates = 0
        self.drift = self.new_detector() if cfg.drift.enabled else None
        self.loss_monitor = ScalarDriftMonitor(cfg.drift.loss_detector, "loss", seed=cfg.drift.seed) \
            if cfg.drift.loss_detector else None
        self.scheduler = ConsolidationScheduler(cfg.scheduler)
        self.rng = random.Random(cfg.train.seed)
        self.events_seen = 0
        self.seq = 0
        self.clock: float | None = None
        self.sources: dict[str, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self.outbox = Outbox()
        self.retried: set[str] = set()  # ids of new events a rejected run gave back for one more try
        self.memories = MemoryCounts()  # what the memories are like (learner.memory.curator)

    def new_detector(self) -> KLDriftDetector:
        return KLDriftDetector(**self.config.drift.kl_params())

    def advance_clock(self, ts: float) -> float:
        """The learner's clock: the newest event time seen (a backfilled event does not move it back)."""
        self.clock = ts if self.clock is None else max(self.clock, ts)
        return self.clock

    def remember(self, event: MemoryEvent, surprise: float | None = None) -> None:
        """Count a new event and keep it in the buffers (weighted by its ``surprise`` in a weighted
        reservoir)."""
        self.events_seen += 1
        self.memories.observe(event)
        if isinstance(self.reservoir, WeightedReservoirBuffer):
            self.reservoir.add(event, weight=max(surprise, 1e-3) if surprise is not None else 1.0)
        else:
            self.reservoir.add(event)
        self.recent.add(event)

    def remember_alert(self, alert: dict[str, Any]) -> None:
        self.alerts = (self.alerts + [alert])[-MAX_ALERTS_KEPT:]

    # -- JSON form ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "format": STATE_FORMAT,
            "profile": self.profile,
            "seq": self.seq,
            "events_seen": self.events_seen,
            "clock": self.clock,
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
            "outbox": self.outbox.snapshot(),
            "retried": sorted(self.retried),
            "memories": self.memories.snapshot(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take over a snapshot (this config's thresholds, the snapshot's counters and contents)."""
        if state.get("format") not in (1, STATE_FORMAT):
            raise CorruptStateError(f"unknown learner state format {state.get('format')!r}")
        if state.get("profile") != self.profile:
            raise CorruptStateError(f"state belongs to profile {state.get('profile')!r}, not {self.profile!r}")
        cfg = self.config
        kind = state["reservoir"].get("kind")
        expected = "weighted-reservoir" if cfg.replay.strategy == "surprise" else "reservoir"
        if kind != expected:
            raise ConfigError(f"replay.strategy = {cfg.replay.strategy!r} but the saved state of {self.profile!r} "
                              f"holds a {kind!r} buffer: keep the strategy a profile started with")
        self.seq = int(state["seq"])
        self.events_seen = int(state["events_seen"])
        self.clock = state.get("clock")
        reservoir_cls = WeightedReservoirBuffer if kind == "weighted-reservoir" else ReservoirBuffer
        self.reservoir = reservoir_cls.restore(state["reservoir"], _event_from_json)
        self.recent = RecentBuffer.restore(state["recent"], _event_from_json)
        if cfg.drift.enabled:
            self.drift = KLDriftDetector.restore(state["drift"]) if state.get("drift") else self.new_detector()
        if self.loss_monitor is not None and state.get("loss_monitor"):
            self.loss_monitor = ScalarDriftMonitor.restore(state["loss_monitor"])
        self.scheduler = ConsolidationScheduler.restore(state["scheduler"], cfg.scheduler)
        version, internal, gauss = state["rng_state"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.sources = {k: int(v) for k, v in state.get("sources", {}).items()}
        self.alerts = list(state.get("alerts", []))
        if state.get("seen_ids"):
            self.seen_ids = SeenIds.restore(state["seen_ids"], capacity=cfg.replay.dedupe_window)
        self.duplicates = int(state.get("duplicates", 0))
        self.outbox = Outbox.restore(state.get("outbox"))
        self.retried = set(state.get("retried", []))
        self.memories = MemoryCounts(state.get("memories"))


def write_state(directory: Path, snapshot: dict[str, Any]) -> Path:
    """Replace ``directory/learner_state.json`` atomically; returns its path."""
    path = Path(directory) / STATE_FILE
    atomic_write_json(path, snapshot, compact=True)
    return path


def read_newest_state(directory: Path, registry: ModelRegistry) -> dict[str, Any] | None:
    """The newer (by ``seq``) of the live state file and the current version's snapshot; None for a new profile.

    The current version is verified before its snapshot is trusted."""
    candidates = []
    live_path = Path(directory) / STATE_FILE
    if live_path.exists():
        candidates.append(read_json(live_path))
    current = registry.current_version
    if current is not None:
        registry.verify(current)
        candidates.append(json.loads(registry.read_file(current, STATE_FILE)))
    if not candidates:
        return None
    return max(candidates, key=lambda s: s.get("seq", 0))  # max keeps the first on a tie: the live file
