"""One consolidation run: train on new + replayed examples, then the evaluation gate.

The loop is flat and reads top to bottom (nanoGPT style); EWC only adds ``λ·penalty``
to the loss. A run never touches the registry: it returns a :class:`RunResult`, and the
caller decides to checkpoint it (accepted) or to put the old weights back (rejected).
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import torch

from learner.adapted import AdaptedModel
from learner.config import LearnerConfig
from learner.data import collate, encode_event, lm_loss, mean_loss
from learner.events import MemoryEvent
from learner.ewc import EWC, per_example_fisher
from learner.faults import failpoint

__all__ = ["Plan", "RunResult", "RunAborted", "run_consolidation", "lr_at"]

FOUNDATION, LORA = "foundation", "lora"
# loss on the new data is a report, not a gate: measured on at most this many of them so a
# large batch does not spend more time evaluating than training
NEW_LOSS_EVAL_CAP = 256


class RunAborted(Exception):
    """The run stopped early (non-finite loss, or a stop request); nothing was kept."""


@dataclass
class Plan:
    """What a consolidation will train on and how it will be judged."""

    trigger: str
    mode: str  # FOUNDATION or LORA
    new: list[MemoryEvent]
    replay: list[MemoryEvent]
    probe: list[MemoryEvent]
    parent_version: int | None
    seed: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def train_events(self) -> list[MemoryEvent]:
        return self.new + self.replay

    def to_dict(self) -> dict:
        """JSON-ready form (a run process reads it back with :meth:`from_dict`)."""
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
    plan: Plan
    accepted: bool
    reason: str
    metrics: dict[str, float]
    steps: int
    duration_s: float
    fisher: dict[str, torch.Tensor] | None = None


def lr_at(step: int, total: int, peak: float, warmup_frac: float, min_ratio: float) -> float:
    """Linear warmup then cosine decay to ``min_ratio · peak``.

    >>> [round(lr_at(s, 10, 1.0, 0.2, 0.1), 3) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.55, 0.134]
    """
    warmup = max(1, int(round(warmup_frac * total))) if warmup_frac > 0 else 0
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _batches(n: int, batch_size: int, epochs: int, rng: random.Random):
    for _ in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]


def run_consolidation(
    plan: Plan,
    live: AdaptedModel,
    cfg: LearnerConfig,
    ewc: EWC | None,
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = lambda _msg: None,
) -> RunResult:
    """Train ``live`` in place on the plan; gate on the probe set; restore weights on rejection."""
    started = time.perf_counter()
    full = plan.mode == FOUNDATION
    train_cfg = cfg.train
    tok = live.tokenizer
    max_len = cfg.model.max_seq_len
    device = live.device
    train_examples = [encode_event(e, tok, max_len) for e in plan.train_events]
    probe_examples = [encode_event(e, tok, max_len) for e in plan.probe]
    new_examples = train_examples[: min(len(plan.new), NEW_LOSS_EVAL_CAP)]  # train_events starts with the new
    if not train_examples:
        raise ValueError("a consolidation needs at least one training example")

    if plan.mode == LORA:
        live.start_lora()
    before = live.trainable_state(full)
    probe_before = mean_loss(live.model, probe_examples, tok.pad_id, device=device)
    new_before = mean_loss(live.model, new_examples, tok.pad_id, device=device)

    params = live.trainable_parameters(full)
    epochs = train_cfg.foundation_epochs if full else train_cfg.epochs
    peak_lr = train_cfg.foundation_lr if full else train_cfg.lr
    steps_per_epoch = math.ceil(len(train_examples) / train_cfg.batch_size)
    total_steps = steps_per_epoch * epochs
    if train_cfg.max_steps:
        total_steps = min(total_steps, train_cfg.max_steps)
    optimizer = torch.optim.AdamW(params.values(), lr=peak_lr, weight_decay=train_cfg.weight_decay)
    penalty_fn = ewc if (ewc is not None and ewc.active and not full) else None
    rng = random.Random(plan.seed)
    torch.manual_seed(plan.seed)

    model = live.model
    model.train()
    loss_sum = torch.zeros((), device=device)  # accumulated on the device: no sync per step
    last_penalty = torch.zeros((), device=device)
    step = 0
    try:
        for indices in _batches(len(train_examples), train_cfg.batch_size, epochs, rng):
            if step >= total_steps:
                break
            if should_stop():
                raise RunAborted("stop requested")
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, peak_lr, train_cfg.warmup_frac, train_cfg.min_lr_ratio)
            batch = collate([train_examples[i] for i in indices], tok.pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = lm_loss(lambda **kw: model(**kw), batch)
            if failpoint("train.step", plan.run_id) == "nan":
                loss = loss * float("nan")
            if penalty_fn is not None:
                last_penalty = penalty_fn.penalty(params)
                loss = loss + last_penalty
            loss.backward()
            if train_cfg.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params.values(), train_cfg.grad_clip)
                loss_sum = loss_sum + norm.detach() * 0  # a non-finite norm poisons the sum too
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)  # frees the gradient memory between steps
            loss_sum = loss_sum + loss.detach()
            step += 1
            if step % 20 == 0 or step == total_steps:
                # .item() is a device-to-host sync: only at logging points
                running = loss_sum.item() / step
                if not math.isfinite(running):
                    raise RunAborted(f"non-finite training loss at step {step}")
                log(f"step {step}/{total_steps} loss {running:.3f}")
        running = loss_sum.item() / max(step, 1)
        if not math.isfinite(running):
            raise RunAborted(f"non-finite training loss at step {step}")
    except RunAborted:
        live.restore_trainable(before, full)
        model.eval()
        raise

    model.eval()  # the live model serves inference between runs: no dropout
    probe_after = mean_loss(model, probe_examples, tok.pad_id, device=device)
    new_after = mean_loss(model, new_examples, tok.pad_id, device=device)
    metrics = {
        "loss_new_before": new_before,
        "loss_new_after": new_after,
        "loss_probe_before": probe_before,
        "loss_probe_after": probe_after,
        "train_loss_mean": running,
        "ewc_penalty": float(last_penalty.detach()),
        "loss_unit": "nats/token",
    }
    accepted, reason = _gate(plan.mode, probe_before, probe_after, new_after, train_cfg.gate_tolerance)
    fisher = None
    if accepted and not full and cfg.ewc.enabled:
        fisher = fisher_after_run(live, train_examples, cfg.ewc.fisher_samples, plan.seed, device)
    if not accepted:
        live.restore_trainable(before, full)
    if full:
        for p in live.base.model.parameters():
            p.requires_grad_(False)
    return RunResult(plan, accepted, reason, metrics, step, time.perf_counter() - started, fisher)


def _gate(mode: str, probe_before: float, probe_after: float, new_after: float, tolerance: float) -> tuple[bool, str]:
    if not (math.isfinite(probe_after) and math.isfinite(new_after)):
        return False, "non-finite loss after training"
    if mode == FOUNDATION:
        if probe_after < probe_before:
            return True, f"probe loss {probe_before:.3f} -> {probe_after:.3f}"
        return False, f"foundation did not lower the probe loss ({probe_before:.3f} -> {probe_after:.3f})"
    limit = probe_before * (1 + tolerance)
    if probe_after <= limit:
        return True, f"probe loss {probe_before:.3f} -> {probe_after:.3f} (limit {limit:.3f})"
    return False, f"forgetting: probe loss {probe_before:.3f} -> {probe_after:.3f} exceeds limit {limit:.3f}"


def fisher_after_run(live: AdaptedModel, examples, n: int, seed: int, device) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of the trainable parameters on ``n`` of ``examples`` (seeded choice)."""
    rng = random.Random(seed + 1)
    chosen = rng.sample(examples, min(n, len(examples)))
    width = max(len(ex["input_ids"]) for ex in chosen)
    padded = [{k: v[0].to(device) for k, v in collate([ex], live.tokenizer.pad_id, width).items()} for ex in chosen]
    return per_example_fisher(live.model, padded, lm_loss)
