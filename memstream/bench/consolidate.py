"""``memstream bench consolidate``: what a consolidation costs, against baselines measured in the same run.

``step``
    Seconds per LoRA optimizer step of memstream's loop (:func:`learner.training.loop.run_consolidation`:
    batching, LR schedule, selected-position loss, clipping) against a bare PEFT training loop
    (``loss = model(**batch).loss; loss.backward(); opt.step()``) on the same adapter and the same
    batches (ratio; target ≤ 1.15), both on the model's device (on a GPU the clock is read once its
    queue is done). memstream's side is a run of ``long`` steps minus a run of ``short`` steps, divided
    by ``long − short``, so the gate's evaluations cancel out. Alternated ``repeats`` times; medians.
    Both sides also count their work: tokens (real and padded), FLOPs
    (:class:`learner.training.batching.StepCount`), and the rate reached as a share of this machine's
    matrix-product rate measured in the same run, on the same device and in the dtype the step computes
    in (:func:`matmul_gflops`: bf16 under CUDA autocast, else the base weights' dtype: bf16 on a CPU that
    computes it natively, float32 on others) — the model FLOPs
    utilisation (MFU), on every computed token and on the real ones.
``ewc``
    The same with the EWC penalty on, against memstream without it (ratio).
``fisher``
    Seconds for the diagonal Fisher on ``ewc.fisher_samples`` examples (what EWC adds after an
    accepted run), and per example.
``load_once``
    Two runs in a row on one trainer: seconds of each and the number of base loads (1: the base
    is loaded once, whatever the number of runs).
``flat``
    Seconds per consolidation after ``small`` vs ``large`` events ingested, same batch (ratio; must
    be ≈ 1). A reduced byte model keeps it quick: what is measured is whether anything grows with
    the history.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import tempfile
import time
from dataclasses import replace
from typing import Callable

import torch

from learner.config import LearnerConfig, load_config
from learner.training.batching import StepCount, matmul_weights
from learner.training.ewc import fisher_after_run
from learner.training.loop import run_consolidation
from learner.model.encoding import collate
from learner.training.ewc import EWC
from contracts.events import MemoryEvent
from learner.online import OnlineLearner
from learner.training.plan import Plan
from memstream.samples.stream import DOMAINS, make_sample_stream
from learner.training.trainer import Trainer
from learner.store.versions import LORA, ewc_from_bytes

__all__ = ["bench_step", "bench_fisher", "bench_flat", "bench_load_once", "matmul_gflops", "FLAT_OVERRIDES"]

FLAT_OVERRIDES = ["model.base=memstream-byte", "scheduler.count=1000000000", "scheduler.interval_s=1e15",
                  "drift.enabled=false", "train.epochs=1", "train.max_steps=20", "model.d_model=64",
                  "model.n_layers=2", "model.d_ff=128", "model.max_seq_len=96", "train.probe_size=32",
                  "ewc.fisher_samples=16"]


def _fixed_steps(config: LearnerConfig, steps: int, ewc: bool = False) -> LearnerConfig:
    # the memories as they are (no views): memstream's loop and the bare PEFT loop train on the same examples
    train = replace(config.train, max_steps=steps, epochs=10_000, gate_tolerance=1e9, gate_max_forgetting=1e9,
                    views=0)
    return replace(config, train=train, ewc=replace(config.ewc, enabled=ewc))


def finish(device: torch.device) -> None:
    """Wait for the work queued on ``device``: a GPU's kernels run after the call that launched them returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute_dtype(live, config: LearnerConfig) -> torch.dtype:
    """The dtype a step's matrix products run in: bf16 under CUDA autocast, else the base weights' own."""
    if live.device.type == "cuda" and config.train.autocast:
        return torch.bfloat16
    return live.dtype


def matmul_gflops(device: torch.device | None = None, dtype: torch.dtype = torch.float32,
                  sizes: tuple[int, ...] = (), repeats: int = 5) -> float:
    """This machine's matrix-product rate (GFLOP/s, torch) on ``device`` in ``dtype``: the best of a few
    square products of each size (1024² and 2048² on a CPU, its threads; 4096² and 8192² on a GPU).

    >>> matmul_gflops(sizes=(64,), repeats=1) > 0
    True
    """
    device = device or torch.device("cpu")
    sizes = sizes or ((1024, 2048) if device.type == "cpu" else (4096, 8192))
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up
        finish(device)
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            finish(device)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - started) / 1e9)
    return best


def _random_batches(n: int, batch_size: int, steps: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches with no regard to length, epoch after epoch: what a tutorial's loader gives."""
    batches: list[list[int]] = []
    while len(batches) < steps:
        order = list(range(n))
        rng.shuffle(order)
        batches += [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return batches[:steps]


def _trained(config: LearnerConfig, events: list[MemoryEvent]) -> tuple[Trainer, EWC]:
    """A trainer whose adapter went through one short accepted run, and the EWC state that run made."""
    trainer = Trainer(config.model)
    plan = Plan("manual", LORA, events[:32], [], events[32:40], None, seed=0)
    result = run_consolidation(plan, trainer.live, _fixed_steps(config, 5, ewc=True), EWC(config.ewc.lam))
    ewc = ewc_from_bytes(result.files["ewc.safetensors"], config)
    return trainer, ewc


def bench_step(config: LearnerConfig, events: list[MemoryEvent], short: int = 5, long: int = 25,
               repeats: int = 3, progress: Callable[[int], None] = lambda _n: None) -> dict:
    """Seconds per LoRA step: memstream's loop, with and without EWC, and a bare PEFT loop (module docstring)."""
    trainer, ewc = _trained(config, events)
    live = trainer.live
    new, probe = events[:64], events[64:72]
    before = live.trainable_state(False)
    examples = [live.encoder.encode(e) for e in new]
    pad = live.tokenizer.pad_id

    counted: dict[str, dict] = {}

    def ours(steps: int, with_ewc: bool) -> float:
        live.restore_trainable(before, False)  # every run starts from the same weights
        plan = Plan("manual", LORA, new, [], probe, None, seed=0)
        started = time.perf_counter()
        result = run_consolidation(plan, live, _fixed_steps(config, steps), ewc if with_ewc else EWC(0.0))
        finish(live.device)
        if steps == long and not with_ewc:
            counted["ours"] = result.metrics  # the plain long run's count is the one reported
        return time.perf_counter() - started

    def bare(steps: int) -> float:
        """The loop a PEFT tutorial writes, on the same batches (the order memstream's seed 0 draws)."""
        live.restore_trainable(before, False)
        model = live.model
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.train.lr)
        batches = _random_batches(len(examples), config.train.batch_size, steps, random.Random(0))
        count = StepCount(*matmul_weights(model))
        autocast = live.autocast() if config.train.autocast else contextlib.nullcontext
        model.train()
        finish(live.device)
        started = time.perf_counter()
        for indices in batches:
            batch = collate([examples[i] for i in indices], pad)
            count.add(batch)
            with autocast():
                loss = model(**{k: v.to(live.device) for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        finish(live.device)
        elapsed = time.perf_counter() - started
        model.eval()
        counted["bare"] = count.metrics(elapsed)
        return elapsed

    runs = {"ours": [], "ewc": [], "bare": []}
    ours(short, False)  # warm-up: first calls allocate
    bare(2)
    for _ in range(repeats):
        runs["ours"].append((ours(long, False) - ours(short, False)) / (long - short))
        runs["ewc"].append((ours(long, True) - ours(short, True)) / (long - short))
        runs["bare"].append(bare(long - short) / (long - short))
        progress(1)
    plain, penalised, bare_s = (statistics.median(runs[k]) for k in ("ours", "ewc", "bare"))
    peak = matmul_gflops(live.device, compute_dtype(live, config))
    return {**{f"{side}_{key}": counted[side][key] for side in ("ours", "bare")
               for key in ("tokens_real", "tokens_padded", "padding_share", "train_flops", "train_gflops_per_s")},
            **{f"{side}_mfu": counted[side]["train_gflops_per_s"] / peak for side in ("ours", "bare")},
            **{f"{side}_mfu_real_tokens": counted[side]["train_gflops_per_s"] / peak
               * (1 - counted[side]["padding_share"]) for side in ("ours", "bare")},
            "matmul_gflops": peak, "matmul_dtype": str(compute_dtype(live, config)).removeprefix("torch."),
            "device": str(live.device), "seconds_per_step_memstream": plain, "seconds_per_step_memstream_ewc": penalised,
            "seconds_per_step_bare_peft": bare_s, "memstream_over_bare_ratio": plain / bare_s,
            "ewc_overhead_ratio": penalised / plain, "runs": runs,
            "trainable_parameters": sum(p.numel() for p in live.trainable_parameters(False).values()),
            "batch_size": config.train.batch_size, "short_steps": short, "long_steps": long,
            "base": config.model.base}


def bench_fisher(config: LearnerConfig, events: list[MemoryEvent], repeats: int = 3) -> dict:
    """Seconds for the Fisher of one accepted run (``ewc.fisher_samples`` per-example gradients)."""
    trainer, _ = _trained(config, events)
    live = trainer.live
    examples = [live.encoder.encode(e) for e in events]
    n = min(config.ewc.fisher_samples, len(examples))
    times, method = [], ""
    for i in range(repeats):
        started = time.perf_counter()
        _, method = fisher_after_run(live, examples, n, i)
        finish(live.device)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    return {"fisher_seconds": seconds, "fisher_examples": n, "fisher_seconds_per_example": seconds / n,
            "fisher_method": method, "runs": times}


def bench_load_once(config: LearnerConfig, events: list[MemoryEvent], steps: int = 5) -> dict:
    """Two consecutive runs of two profiles on one trainer: the base is loaded once."""
    started = time.perf_counter()
    trainer = Trainer(config.model)
    load_s = time.perf_counter() - started
    cfg = _fixed_steps(config, steps)
    runs = []
    for i in range(2):
        plan = Plan("manual", LORA, events[i * 32:(i + 1) * 32], [], events[64:72], None, seed=i)
        t = time.perf_counter()
        result = trainer.run(plan, None, cfg, f"profile-{i}")
        runs.append({"seconds": time.perf_counter() - t, "base_loads": result.metrics["base_loads"]})
    return {"base_load_seconds": load_s, "runs": runs, "base_loads_after_two_runs": trainer.live.base_loads}


class _FlatSubject:
    """A learner that has ingested ``ingested`` events, ready to consolidate batches of ``batch_new``."""

    def __init__(self, ingested: int, batch_new: int, repeats: int):
        cfg = load_config(overrides=FLAT_OVERRIDES, environ={})
        self.learner = OnlineLearner("bench", cfg, tempfile.mkdtemp(prefix="memstream-bench-"))
        self.events = make_sample_stream(n_per_phase=(ingested + batch_new * (repeats + 1),), seed=0,
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
