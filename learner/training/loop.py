"""One consolidation run: train on new + replayed examples, then the evaluation gate.

The loop is flat and reads top to bottom (nanoGPT style); EWC only adds the gradient of ``λ·penalty``
to the loss's. A run never touches the registry: it returns a :class:`learner.training.plan.RunResult` (with the new
version's files when accepted) and the caller commits it; a run that is not accepted puts the
weights back as they were.

The gate (:func:`judge`) compares the loss on a held-out probe set of old memories before and
after, and what the run learned on its new memories:

- accept when the probe loss rose by at most ``train.gate_tolerance`` (relative);
- else accept when it rose by at most ``train.gate_max_forgetting`` (relative) *and* the new
  memories' loss fell by at least ``train.gate_gain_ratio`` times as many nats as the probe rose
  (a run that learned a great deal for a little forgetting is worth keeping);
- else reject.

Whatever the memories, a run is also rejected when the loss on the base model's own held-out
text (:mod:`learner.training.rehearsal`) rose by more than ``train.gate_base_tolerance``: what the base
could do is not traded for memories.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from contextlib import nullcontext
from typing import Callable

import torch

from learner.model.adapted import AdaptedModel
from learner.config import LearnerConfig
from learner.model.encoding import collate
from learner.model.losses import lm_loss_by_parts, mean_loss
from learner.training.progress import RunClock, capped_note, lr_at, progress_line, schedule_steps
from learner.training.batching import (StepCount, length_grouped_batches, length_groups, matmul_weights, part_cost,
                                       step_batches)
from learner.training.rehearsal import Rehearsal, distill_loss
from learner.training.ewc import EWC
from learner.training.outputs import version_files
from learner.failpoints import failpoint
from learner.memory.views import with_views
from learner.training.contrast import WrongAnswers, unlikelihood_loss
from learner.training.distill import kl_from_base, memory_loss, question_pairs, teach, with_targets
from learner.training.plan import Plan, RunResult
from learner.store.versions import FOUNDATION, LORA
from learner.policy.gate import judge

__all__ = ["RunStopped", "run_consolidation"]

# loss on the new data is measured on at most this many of them, so that a large batch does not
# spend more time evaluating than training
NEW_LOSS_EVAL_CAP = 256
KL_EVAL_CAP = 64  # ... and the distance from the base (two forward passes each) on at most this many


class RunStopped(Exception):
    """A stop request ended the run early; nothing was kept."""


class _NonFinite(Exception):
    pass


def run_consolidation(
    plan: Plan,
    live: AdaptedModel,
    cfg: LearnerConfig,
    ewc: EWC,
    profile: str = "",
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = lambda _msg: None,
    rehearsal: Rehearsal | None = None,
) -> RunResult:
    """Train ``live`` in place on the plan, gate it, and return the run's result.

    ``rehearsal`` is the base model's own text with its next-token distributions: each step adds a
    rehearsal batch whose KL from the base joins the loss, and the gate probes its held-out part
    (:mod:`learner.training.rehearsal`).
    Accepted: ``live`` keeps the new weights and the result carries the version's files (the
    adapter and the EWC state updated with this run's Fisher, a new object: ``ewc`` is untouched).
    Otherwise ``live`` is put back as it was.
    """
    started = time.perf_counter()
    full = plan.mode == FOUNDATION
    train_cfg = cfg.train
    encoder, pad = live.encoder, live.tokenizer.pad_id
    device = live.device
    autocast = live.autocast() if train_cfg.autocast else nullcontext  # a context factory either way
    train_examples = [encoder.encode(e) for e in plan.train_events]
    links = 0 if full else train_cfg.linked_views
    new_views, new_counts = with_views(plan.new, 0 if full else train_cfg.views, links)
    replay_views, replay_counts = with_views(plan.replay, 0 if full else train_cfg.views, links)
    view_counts = Counter(new_counts)
    view_counts.update(replay_counts)
    views, view_counts = new_views + replay_views, dict(view_counts)
    train_examples += [encoder.encode(v) for v in views]  # after the events: new_examples below are the new
    # the new memories' examples: the memories, then their views (what may rest once learned)
    restable = set(range(len(plan.new))) | set(range(len(plan.train_events), len(plan.train_events) + len(new_views)))
    probe_examples = [encoder.encode(e) for e in plan.probe]
    new_examples = train_examples[: min(len(plan.new), NEW_LOSS_EVAL_CAP)]  # train_events starts with the new
    if not train_examples:
        raise ValueError("a consolidation needs at least one training example")
    rehearse = rehearsal is not None and cfg.replay.base_rehearsal > 0 and not full
    base_examples = rehearsal.probe if rehearse else []
    per_step = max(1, round(train_cfg.batch_size * cfg.replay.base_rehearsal / (1 - cfg.replay.base_rehearsal))) \
        if rehearse else 0
    rehearsal_rng = random.Random(plan.seed + 2)
    contrasting = train_cfg.contrast > 0 and not full
    wrong = WrongAnswers(encoder, plan.train_events, list(plan.train_events) + views, train_examples,
                         plan.seed + 3) if contrasting else None  # the events of train_examples, in their order
    rehearsal_groups = length_groups([len(ex["input_ids"]) for ex in rehearsal.pool], per_step, rehearsal_rng) \
        if rehearse else []
    clock = RunClock(started)

    def evaluate(examples):
        return mean_loss(live.model, examples, pad, device=device, max_tokens=train_cfg.eval_max_tokens,
                         autocast=autocast)

    rng = random.Random(plan.seed)
    torch.manual_seed(plan.seed)  # LoRA's initial A, dropout: the same plan trains the same way anywhere
    parent_tag, parent_base_tag = live.tag, live.base_tag
    live.tag = ("training", plan.run_id)  # weights that change in place: no version's any more
    if full:
        live.base_tag = live.tag
    if plan.mode == LORA and not live.has_adapter:
        live.start_lora()
    distilling = train_cfg.objective != "ce" and not full
    if distilling:  # the base's answers with each memory in its context: the targets of the question examples
        taught = teach(live, encoder, question_pairs(plan.train_events, views), train_examples)
        clock.lap("teach_s")
    before = live.trainable_state(full)
    probe_before, new_before = evaluate(probe_examples), evaluate(new_examples)
    probe_origin = math.nan  # the probe without any adapter: what the old memories cost before they were learned
    if plan.mode == LORA and probe_examples and live.has_adapter:
        with live.peft_model.disable_adapter():
            probe_origin = evaluate(probe_examples)
    base_before = evaluate(base_examples) if base_examples else math.nan
    clock.lap("evaluate_s")

    params = live.trainable_parameters(full)
    epochs = train_cfg.foundation_epochs if full else train_cfg.epochs
    peak_lr = (train_cfg.foundation_lr if full else train_cfg.lr) * plan.lr_scale
    steps_per_epoch = math.ceil(len(train_examples) / train_cfg.batch_size)
    total_steps = schedule_steps(steps_per_epoch, epochs, train_cfg.max_steps)
    capped = capped_note(steps_per_epoch, epochs, train_cfg.max_steps)
    if capped:
        log(f"[{profile}] {capped}")
    optimizer = torch.optim.AdamW(params.values(), lr=peak_lr, weight_decay=train_cfg.weight_decay)
    penalty_fn = ewc if (ewc.active and not full) else None

    model = live.model
    count = StepCount(*matmul_weights(model))
    model.train()
    loss_sum = torch.zeros((), device=device)  # accumulated on the device: no sync per step
    last_penalty = torch.zeros((), device=device)
    step = 0
    rest_below = 0.0 if (full or distilling) else train_cfg.rest_below
    packs = train_cfg.pack and not distilling and live.packs  # the distillation's targets are laid out by row
    split_cost = part_cost(train_cfg.split_cost, torch.device(device).type)
    resting: set[int] = set()  # learned examples of the new memories: out of the later epochs
    try:
        lengths = [len(ex["input_ids"]) for ex in train_examples]
        for drawn_batch in length_grouped_batches(lengths, train_cfg.batch_size, epochs, rng, resting):
            indices = drawn_batch.indices
            # the schedule's clock: every epoch spans steps_per_epoch of it, however many examples rest
            at = drawn_batch.epoch * steps_per_epoch + drawn_batch.index * steps_per_epoch / drawn_batch.of
            if at >= total_steps:
                break
            if should_stop():
                raise RunStopped("stop requested")
            for group in optimizer.param_groups:
                group["lr"] = lr_at(at, total_steps, peak_lr, train_cfg.warmup_frac, train_cfg.min_lr_ratio)
            chosen = [train_examples[i] for i in indices]
            if distilling:  # the targets are laid out by row of one padded batch
                batch = collate(chosen, pad)
                count.add(batch)
                distilled = with_targets(batch, chosen)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with autocast():
                    loss = memory_loss(model, batch, distilled, keep_ce=train_cfg.objective == "ce+distill")
            else:
                order, batches = step_batches(chosen, pad, packs, split_cost)
                for part_batch in batches:
                    count.add(part_batch)
                batches = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in batches]
                with autocast():
                    loss, rows = lm_loss_by_parts(model, batches)
                if rest_below:
                    resting.update(indices[p] for p, row_loss in zip(order, rows.tolist())
                                   if row_loss < rest_below and indices[p] in restable)
            # each question drawn with a wrong answer: where it leaves the right one, made unlikely
            wrong_batch = wrong.batch(indices, pad) if wrong is not None else None
            if wrong_batch is not None:
                count.add(wrong_batch)
                wrong_batch = {k: v.to(device, non_blocking=True) for k, v in wrong_batch.items()}
                with autocast():
                    loss = loss + train_cfg.contrast * unlikelihood_loss(model, wrong_batch)
            if rehearse:  # the base's own text: stay with its next-token distribution
                drawn = [rehearsal.pool[i] for i in rehearsal_rng.choice(rehearsal_groups)]
                base_batch = collate(drawn, pad)
                count.add(base_batch)
                with_targets(base_batch, drawn)
                base_batch = {k: v.to(device, non_blocking=True) for k, v in base_batch.items()}
                with autocast():
                    kl = distill_loss(model, base_batch)
                loss = loss + cfg.replay.rehearsal_weight * kl
            if failpoint("train.step", plan.run_id) == "nan":
                loss = loss * float("nan")
            loss.backward()
            if penalty_fn is not None:
                last_penalty = penalty_fn.add_gradient(params)
                loss = loss.detach() + last_penalty
            if train_cfg.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params.values(), train_cfg.grad_clip)
                loss_sum = loss_sum + norm.detach() * 0  # a non-finite norm poisons the sum too
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)  # frees the gradient memory between steps
            loss_sum = loss_sum + loss.detach()
            step += 1
            after = at + steps_per_epoch / drawn_batch.of  # the schedule's clock once this step is done
            if step % 10 == 0 or after >= total_steps:
                # .item() is a device-to-host sync: only at logging points
                running = loss_sum.item() / step
                if not math.isfinite(running):
                    raise _NonFinite(f"non-finite training loss at step {step}")
                log(f"[{profile}] step {step}/{total_steps} loss {running:.3f}, "
                    + progress_line(count.tokens_real, after, total_steps, time.perf_counter() - clock.last))
        running = loss_sum.item() / max(step, 1)
        if not math.isfinite(running):
            raise _NonFinite(f"non-finite training loss at step {step}")
    except (RunStopped, _NonFinite) as exc:
        live.restore_trainable(before, full)
        live.tag, live.base_tag = parent_tag, parent_base_tag
        _settle(live, full)
        status = "stopped" if isinstance(exc, RunStopped) else "aborted"
        return RunResult.for_plan(plan, profile, status, str(exc), steps=step,
                                  duration_s=round(time.perf_counter() - started, 3))

    if plan.mode == LORA and train_cfg.end_scale != 1.0:
        live.scale_adapter(train_cfg.end_scale, towards=before if train_cfg.end_scale_of == "run" else None)
    steps_s = clock.lap("steps_s")
    model.eval()  # the live model serves inference between runs: no dropout
    probe_after, new_after = evaluate(probe_examples), evaluate(new_examples)
    moved = kl_from_base(live, new_examples[:KL_EVAL_CAP]) if plan.mode == LORA else math.nan
    base_after = evaluate(base_examples) if base_examples else math.nan
    clock.lap("evaluate_s")
    metrics = {
        "loss_new_before": new_before,
        "loss_new_after": new_after,
        "loss_probe_before": probe_before,
        "loss_probe_after": probe_after,
        "loss_probe_origin": probe_origin,
        "kl_base_new": moved,
        "train_loss_mean": running,
        "ewc_penalty": float(last_penalty.detach()),
        "loss_unit": "nats/token",
        **count.metrics(steps_s),
    }
    if (train_cfg.views or links) and not full:
        metrics["views"] = view_counts
    if rest_below:
        metrics["rested_examples"] = len(resting)
    if capped:
        metrics["capped"] = capped
    if contrasting:
        metrics["contrast_questions"] = len(wrong.choices)
    if distilling:
        metrics.update(objective=train_cfg.objective, distilled_examples=taught)
    if base_examples:
        metrics.update(loss_base_before=base_before, loss_base_after=base_after,
                       base_rehearsal_per_step=per_step)
    accepted, reason = judge(plan.mode, probe_before, probe_after, new_before, new_after, train_cfg.gate_tolerance,
                             train_cfg.gate_max_forgetting, train_cfg.gate_gain_ratio,
                             (base_before, base_after, train_cfg.gate_base_tolerance) if base_examples else None,
                             probe_origin)
    files = None
    if accepted:
        files = version_files(plan, live, cfg, ewc, train_examples, params, metrics, clock, profile)
        live.tag = ("trained", plan.run_id)  # what the version will hold once committed
        if full:
            live.base_tag = live.tag
    else:
        live.restore_trainable(before, full)
        live.tag, live.base_tag = parent_tag, parent_base_tag
    _settle(live, full)
    status = "accepted" if accepted else "rejected"
    metrics.update(clock.laps)
    return RunResult.for_plan(plan, profile, status, reason, steps=step, metrics=metrics,
                              duration_s=round(time.perf_counter() - started, 3), files=files)


def _settle(live: AdaptedModel, full: bool) -> None:
    """Back to serving: evaluation mode, base frozen."""
    live.model.eval()
    if full:
        live.freeze_base()
