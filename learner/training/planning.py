"""Planning a consolidation: which new, replay and probe examples it trains on and is judged by.

>>> from learner.config import load_config
>>> from learner.memory.state import LearnerState
>>> from contracts.events import MemoryEvent
>>> cfg = load_config(environ={}, overrides=["model.base=memstream-byte"])
>>> state = LearnerState("ann", cfg)
>>> for i in range(40):
...     event = MemoryEvent.build({"profile": "ann", "ts": float(i), "kind": "note", "text": f"fact number {i}"})
...     _ = state.reservoir.add(event)
...     if i >= 30:
...         state.recent.add(event)
>>> plan = plan_run(state, cfg.train, "manual", "lora", parent_version=1)
>>> len(plan.new), len(plan.probe), len(plan.replay), plan.attempt
(10, 7, 7, 1)
"""

from __future__ import annotations

from learner.memory.state import LearnerState
from learner.store.versions import FOUNDATION
from learner.training.config import TrainConfig
from learner.training.plan import Plan

__all__ = ["plan_run"]


def plan_run(state: LearnerState, cfg: TrainConfig, trigger: str, mode: str, parent_version: int | None) -> Plan:
    """Choose the new, replay and probe examples of the next consolidation.

    The probe (old memories held out of training, for the gate) takes at most a quarter of what is
    old, so that replay keeps the rest; with fewer than four old memories there is none (the first
    run of a pretrained base is judged by what it keeps of the base), except for the byte model's
    foundation, which holds part of its new data out. New events a rejected run gave back make this
    the second attempt: more replay (``train.retry_replay_ratio``) and a lower learning rate
    (``train.retry_lr_scale``).

    Draws from ``state``'s generator (the reservoir's sample and the run's seed)."""
    new = state.recent.items
    new_ids = {e.id for e in new}
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
                parent_version=parent_version, seed=state.rng.randrange(2**31),
                clock=state.clock or 0.0, attempt=2 if retry else 1,
                lr_scale=cfg.retry_lr_scale if retry else 1.0)
