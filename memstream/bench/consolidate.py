"""``memstream bench consolidate``: what a consolidation costs, and what EWC adds to it.

Three measurements, each against a baseline taken in the same run:

``step``
    Seconds per LoRA optimizer step with the EWC penalty and without it (ratio; target ≤ 1.10).
    Both go through :func:`learner.consolidation.run_consolidation`: a run of ``long`` steps
    minus a run of ``short`` steps, divided by ``long − short``, so the evaluation before and
    after a run cancels out. With and without alternate ``repeats`` times; medians.
``fisher``
    Seconds to compute the diagonal Fisher on ``ewc.fisher_samples`` examples (the work EWC
    adds after an accepted run), and per example.
``flat``
    Seconds per consolidation after ``small`` vs ``large`` events ingested through
    ``learn_one``, same batch (ratio; must be flat, ≈ 1). A reduced model keeps it quick;
    what is measured is whether anything grows with the history.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from typing import Callable

from learner.adapted import AdaptedModel
from learner.config import LearnerConfig, load_config
from learner.consolidation import LORA, Plan, fisher_after_run, run_consolidation
from learner.data import encode_event
from learner.ewc import EWC
from learner.events import MemoryEvent
from learner.online import OnlineLearner
from learner.sample_data import DOMAINS, generate_stream

__all__ = ["bench_step", "bench_fisher", "bench_flat", "FLAT_OVERRIDES"]

FLAT_OVERRIDES = ["scheduler.count=1000000000", "scheduler.interval_s=1e15", "drift.enabled=false",
                  "train.epochs=1", "train.max_steps=20", "model.d_model=64", "model.n_layers=2", "model.d_ff=128",
                  "model.max_seq_len=96", "train.probe_size=32", "ewc.fisher_samples=16"]


def _lora_model_with_fisher(config: LearnerConfig, events: list[MemoryEvent]) -> tuple[AdaptedModel, EWC]:
    """A LoRA-wrapped default model after one short run, and an EWC state with a real Fisher."""
    live = AdaptedModel(config.model)
    cfg = _fixed_steps(config, 5)
    plan = Plan("manual", LORA, events[:32], [], events[32:40], None, seed=0)
    result = run_consolidation(plan, live, replace(cfg, ewc=replace(cfg.ewc, enabled=True)), None)
    ewc = EWC(config.ewc.lam, config.ewc.gamma)
    ewc.accumulate(result.fisher, {n: p.detach() for n, p in live.trainable_parameters(False).items()})
    return live, ewc


def _fixed_steps(config: LearnerConfig, steps: int) -> LearnerConfig:
    train = replace(config.train, max_steps=steps, epochs=10_000, gate_tolerance=1e9)
    return replace(config, train=train, ewc=replace(config.ewc, enabled=False))  # no Fisher inside the timing


def bench_step(config: LearnerConfig, events: list[MemoryEvent], short: int = 5, long: int = 25,
               repeats: int = 3, progress: Callable[[int], None] = lambda _n: None) -> dict:
    """Seconds per LoRA step with and without the EWC penalty (see the module docstring)."""
    live, ewc = _lora_model_with_fisher(config, events)
    new, probe = events[:64], events[64:72]
    before = live.trainable_state(False)

    def run(steps: int, with_ewc: bool) -> float:
        live.restore_trainable(before, False)  # every run starts from the same weights
        plan = Plan("manual", LORA, new, [], probe, None, seed=0)
        started = time.perf_counter()
        run_consolidation(plan, live, _fixed_steps(config, steps), ewc if with_ewc else None)
        return time.perf_counter() - started

    per_step = {True: [], False: []}
    run(short, False)  # warm-up: first calls allocate
    for _ in range(repeats):
        for with_ewc in (False, True):
            per_step[with_ewc].append((run(long, with_ewc) - run(short, with_ewc)) / (long - short))
            progress(1)
    plain, penalised = statistics.median(per_step[False]), statistics.median(per_step[True])
    return {"seconds_per_step_plain": plain, "seconds_per_step_ewc": penalised,
            "ewc_overhead_ratio": penalised / plain, "runs_plain": per_step[False], "runs_ewc": per_step[True],
            "trainable_parameters": sum(p.numel() for p in live.trainable_parameters(False).values()),
            "batch_size": config.train.batch_size, "short_steps": short, "long_steps": long}


def bench_fisher(config: LearnerConfig, events: list[MemoryEvent], repeats: int = 3) -> dict:
    """Seconds for the Fisher of one accepted run (``ewc.fisher_samples`` per-example gradients)."""
    live, _ = _lora_model_with_fisher(config, events)
    examples = [encode_event(e, live.tokenizer, config.model.max_seq_len) for e in events]
    n = min(config.ewc.fisher_samples, len(examples))
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        fisher_after_run(live, examples, n, i, live.device)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"fisher_seconds": seconds, "fisher_examples": n, "fisher_seconds_per_example": seconds / n,
            "runs": times}


class _FlatSubject:
    """A learner that has ingested ``ingested`` events, ready to consolidate batches of ``batch_new``."""

    def __init__(self, ingested: int, batch_new: int, repeats: int):
        cfg = load_config(overrides=FLAT_OVERRIDES, environ={})
        self.learner = OnlineLearner("bench", cfg, tempfile.mkdtemp(prefix="memstream-bench-"))
        self.events = generate_stream(n_per_phase=(ingested + batch_new * (repeats + 1),), seed=0,
                                      phases=[tuple(DOMAINS)], profile="bench")
        self.batch_new = batch_new
        started = time.perf_counter()
        for e in self.events[:ingested]:
            self.learner.learn_one(e)
        self.ingest_s = time.perf_counter() - started
        self.cursor = ingested
        self.learner.consolidate("manual")  # the foundation run, not timed
        self.times: list[float] = []

    def timed_consolidation(self) -> None:
        for e in self.events[self.cursor:self.cursor + self.batch_new]:
            self.learner.learn_one(e)
        self.cursor += self.batch_new
        started = time.perf_counter()
        self.learner.consolidate("manual")
        self.times.append(time.perf_counter() - started)


def bench_flat(small: int = 1_000, large: int = 100_000, batch_new: int = 200, repeats: int = 3,
               progress: Callable[[int], None] = lambda _n: None) -> dict:
    """Consolidation seconds after ``small`` vs ``large`` ingested events, timed alternately."""
    small_subject = _FlatSubject(small, batch_new, repeats)
    large_subject = _FlatSubject(large, batch_new, repeats)
    for _ in range(repeats):  # alternate, so machine noise hits both alike
        small_subject.timed_consolidation()
        large_subject.timed_consolidation()
        progress(1)
    s, l = statistics.median(small_subject.times), statistics.median(large_subject.times)
    return {"small_events": small, "large_events": large, "batch_new": batch_new,
            "consolidation_s_small": s, "consolidation_s_large": l, "ratio_large_over_small": l / s,
            "runs_small": small_subject.times, "runs_large": large_subject.times,
            "ingest_events_per_s_small": small / small_subject.ingest_s,
            "ingest_events_per_s_large": large / large_subject.ingest_s}




