"""A consolidation run: its plan, and the one result type that follows it from the training loop
to the registry and onto the wire.

A run's ``status`` is decided once and carried along:

==================  ===========================================================================
``accepted``        the gate passed; ``files`` holds the new version's files until it is committed
``rejected``        the gate refused it (too much forgetting for what it learned)
``aborted``         a non-finite loss stopped it; nothing was kept
``stopped``         a stop request (shutdown, rebalance) stopped it; its events wait for a rerun
``failed``          the process computing it died or raised
``checkpoint_failed`` accepted, but writing the version failed (disk full, read-only)
==================  ===========================================================================

Examples
--------
>>> r = RunResult(run_id="r1", profile="alice", trigger="count", mode="lora", status="rejected",
...               reason="forgetting", parent_version=2)
>>> r.accepted, r.waits_for_rerun
(False, False)
>>> RunResult.from_wire(r.to_wire()) == r
True
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from contracts.events import MemoryEvent

__all__ = ["Plan", "RunResult", "STATUSES"]

STATUSES = ("accepted", "rejected", "aborted", "stopped", "failed", "checkpoint_failed")


@dataclass
class Plan:
    """What a consolidation will train on and how it will be judged.

    ``attempt`` is 2 when the new events were refused once already: the run then mixes in more
    replay and uses a lower learning rate (``replay_ratio`` and ``lr_scale`` say how much).
    ``clock`` is the learner's clock (the newest event time) when the run was planned.

    >>> e = MemoryEvent.build({"profile": "ann", "ts": 1.0, "kind": "note", "text": "Odile is my sister."})
    >>> plan = Plan(trigger="manual", mode="lora", new=[e], replay=[], probe=[], parent_version=None, seed=7,
    ...             run_id="r1")
    >>> Plan.from_dict(plan.to_dict()) == plan, [x.text for x in plan.train_events]
    (True, ['Odile is my sister.'])
    """

    trigger: str
    mode: str  # FOUNDATION or LORA
    new: list[MemoryEvent]
    replay: list[MemoryEvent]
    probe: list[MemoryEvent]
    parent_version: int | None
    seed: int
    clock: float = 0.0
    attempt: int = 1
    lr_scale: float = 1.0
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def train_events(self) -> list[MemoryEvent]:
        return self.new + self.replay

    def to_dict(self) -> dict:
        """JSON-ready form (a trainer process reads it back with :meth:`from_dict`)."""
        data = dict(self.__dict__)
        for name in ("new", "replay", "probe"):
            data[name] = [e.to_dict() for e in data[name]]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        data = dict(data)
        for name in ("new", "replay", "probe"):
            data[name] = [MemoryEvent.from_dict(e) for e in data[name]]
        return cls(**data)


@dataclass
class RunResult:
    """What one run did: the verdict, the measurements and, once committed, where the version is.

    ``adapter_path`` is relative to the state directory (``PROFILE/versions/v0003/...``), so a
    reader that mounts the state elsewhere can follow it.
    """

    run_id: str
    profile: str
    trigger: str
    mode: str
    status: str
    reason: str
    parent_version: int | None
    samples_new: int = 0
    samples_replay: int = 0
    steps: int = 0
    duration_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    version: int | None = None
    base_model: str = ""
    adapter_path: str | None = None
    sha256: str | None = None
    exports: dict[str, dict[str, Any]] = field(default_factory=dict)  # gguf_lora / gguf: path, sha256, bytes
    ts: float = field(default_factory=time.time)
    files: dict[str, bytes] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    @property
    def waits_for_rerun(self) -> bool:
        """The run's new events stay new: it was stopped, failed, or could not be written."""
        return self.status in ("stopped", "failed", "checkpoint_failed")

    @classmethod
    def for_plan(cls, plan: Plan, profile: str, status: str, reason: str, **values: Any) -> "RunResult":
        return cls(run_id=plan.run_id, profile=profile, trigger=plan.trigger, mode=plan.mode, status=status,
                   reason=reason, parent_version=plan.parent_version, samples_new=len(plan.new),
                   samples_replay=len(plan.replay), attempt=plan.attempt, **values)

    def report(self) -> dict[str, Any]:
        """The plain fields (no file bytes): what logs, summaries and ModelUpdated events show. A
        measure that has no value (a NaN: no probe yet) is None, so every subscriber can decode it."""
        out = {f.name: _finite(getattr(self, f.name)) for f in fields(self) if f.name != "files"}
        out["accepted"] = self.accepted
        return out

    def to_wire(self) -> dict[str, Any]:
        """Plain data for the pipe between a trainer process and its worker."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> "RunResult":
        return cls(**data)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (in dicts and lists too) replaced by None.

    >>> _finite({"loss": float("nan"), "steps": [1.5, float("inf")]})
    {'loss': None, 'steps': [1.5, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
