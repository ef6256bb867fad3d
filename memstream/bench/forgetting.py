"""``memstream bench forgetting``: how much each strategy forgets and learns on a domain-labelled stream.

Protocol (the same for every strategy, seed by seed)
    1. Each domain (``meta.domain``, in order of first appearance) is split once into a
       held-out set (``n_eval`` events), a foundation share (``n_foundation``) and its
       stage's training set (the rest, at most ``n_train``). The split does not depend on
       the seed; the model's initial weights, batching and LoRA initialisation do.
    2. **Foundation**: full-parameter training of the default model on the foundation
       shares of all domains (a model that knows the language, as a monthly full retrain
       would give), ``foundation_steps`` steps. Shared by every strategy.
    3. **Stages 0…T-1**: one LoRA consolidation per domain, in order, ``steps`` optimizer
       steps each, through memstream's own :func:`learner.online.compute_run` (so EWC,
       replay and the loop are the product's code, not a copy). The evaluation gate is
       switched off: the benchmark measures the learning rule, not the safety net.
    4. After every stage the held-out loss of every domain, in bits per byte (bits per
       token for a Hugging Face base), fills one row of ``R``; ``initial`` (the ``b`` of
       :mod:`memstream.bench.continual`) is the foundation model's row; ``untrained`` is the row of
       the randomly initialised model, for reference.

Strategies: ``naive`` (new data only), ``replay`` (new + a reservoir sample of what came
before, ``train.replay_ratio`` of each batch), ``ewc`` (new data + EWC penalty),
``replay+ewc`` (memstream's default), ``joint`` (everything seen so far, mixed: the upper
bound a full retrain approximates). Same steps, batch size and seeds for all.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from learner.model.adapted import AdaptedModel
from learner.config import LearnerConfig
from learner.training import loop as consolidation
from learner.training.loop import run_consolidation
from contracts.events import MemoryEvent
from learner.training.ewc import EWC
from memstream.bench.foundation import (DomainSplit, Evaluator, FoundationCache, split_domains, stage_config,
                                        train_foundation)
from memstream.bench.continual import continual_metrics
from learner.training.rehearsal import prepare
from learner.memory.replay import ReservoirBuffer
from learner.training.plan import Plan
from learner.store.versions import LORA, ewc_from_bytes

__all__ = ["STRATEGIES", "Strategy", "check_strategies", "run_forgetting"]


@dataclass(frozen=True)
class Strategy:
    """Which of memstream's safeguards a run uses.

    >>> sorted(name for name, s in STRATEGIES.items() if s.ewc)[:2], STRATEGIES["naive"]
    (['ewc', 'replay+ewc'], Strategy(replay=False, ewc=False, joint=False))"""

    replay: bool = False
    ewc: bool = False
    joint: bool = False


STRATEGIES = {
    "naive": Strategy(),
    "replay": Strategy(replay=True),
    "ewc": Strategy(ewc=True),
    "replay+ewc": Strategy(replay=True, ewc=True),
    "joint": Strategy(joint=True),
}


@dataclass
class SeedRun:
    """One strategy, one seed."""

    R: list[list[float]]
    seconds: float
    stages: list[dict] = field(default_factory=list)


def _run_strategy(strategy: Strategy, split: DomainSplit, config: LearnerConfig, steps: int, seed: int,
                  foundation_state: dict[str, torch.Tensor], evaluator: Evaluator,
                  on_stage: Callable[[], None]) -> SeedRun:
    cfg = stage_config(config, steps, ewc=bool(strategy and strategy.ewc))
    cfg = replace(cfg, model=replace(cfg.model, init_seed=seed))
    live = AdaptedModel(cfg.model)
    if foundation_state is not None:
        live.load_base_state(foundation_state, ("bench-foundation", seed))
    ewc = EWC(cfg.ewc.lam if strategy.ewc else 0.0, cfg.ewc.gamma)
    rehearse = prepare(live, cfg) if strategy.replay and strategy.ewc else None  # memstream's rule only
    reservoir = ReservoirBuffer(cfg.replay.capacity, seed=seed)
    for event in split.foundation:
        reservoir.add(event)
    seen = list(split.foundation)
    rng = random.Random(seed)
    R = []
    stages = []
    started = time.perf_counter()
    for stage, domain in enumerate(split.domains):
        new = list(split.train[domain])
        seen += new
        if strategy.joint:
            new = rng.sample(seen, len(seen))
        replay = []
        if strategy.replay:
            want = round(len(new) * cfg.train.replay_ratio / (1 - cfg.train.replay_ratio))
            replay = reservoir.sample(min(want, len(reservoir)), rng)
        torch.manual_seed(seed * 1000 + stage)  # LoRA's A initialisation, identical across strategies
        plan = Plan(trigger="manual", mode=LORA, new=new, replay=replay, probe=new[:16],
                    parent_version=stage + 1, seed=seed * 1000 + stage)
        outcome = run_consolidation(plan, live, cfg, ewc, rehearsal=rehearse)
        if outcome.status == "aborted":
            raise RuntimeError(f"stage {stage} ({domain}) aborted: {outcome.reason}")
        if outcome.files and "ewc.safetensors" in outcome.files:
            ewc = ewc_from_bytes(outcome.files["ewc.safetensors"], cfg)  # F <- gamma F + F_new, for the next stage
        for event in split.train[domain]:
            reservoir.add(event)
        R.append(evaluator.row(live))
        stages.append({"domain": domain, "new": len(new), "replay": len(replay), "steps": outcome.steps,
                       "ewc_penalty": outcome.metrics.get("ewc_penalty", 0.0)})
        on_stage()
    return SeedRun(R, time.perf_counter() - started, stages)


def _mean_matrix(matrices: list[list[list[float]]]) -> list[list[float]]:
    return [[statistics.fmean(m[i][j] for m in matrices) for j in range(len(matrices[0][0]))]
            for i in range(len(matrices[0]))]


def _summary(runs: list[SeedRun], initials: list[list[float]]) -> dict:
    per_seed = [continual_metrics(run.R, initial).to_dict() for run, initial in zip(runs, initials)]
    out = {}
    for name in ("forgetting", "plasticity", "final_loss", "bwt", "fwt"):
        values = [m[name] for m in per_seed]
        out[name] = statistics.fmean(values)
        out[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    out["forgetting_per_domain"] = [statistics.fmean(v) for v in zip(*(m["forgetting_per_domain"] for m in per_seed))]
    out["plasticity_per_domain"] = [statistics.fmean(v) for v in zip(*(m["plasticity_per_domain"] for m in per_seed))]
    out["R"] = _mean_matrix([run.R for run in runs])
    out["R_per_seed"] = [run.R for run in runs]
    out["seconds"] = statistics.fmean(run.seconds for run in runs)
    out["stages"] = runs[0].stages
    return out


def acceptance(results: dict) -> dict:
    """The benchmark's targets, checked against these results (None where a strategy is missing)."""
    s = results["strategies"]
    checks = {}
    if "naive" in s and "replay+ewc" in s:
        naive, ours = s["naive"], s["replay+ewc"]
        checks["forgetting_ratio_vs_naive"] = _ratio(ours["forgetting"], naive["forgetting"])
        checks["plasticity_ratio_vs_naive"] = _ratio(ours["plasticity"], naive["plasticity"])
        checks["naive_forgetting_over_spread"] = _ratio(naive["forgetting"],
                                                         max(naive["forgetting_std"], ours["forgetting_std"]))
    if "joint" in s and "replay+ewc" in s:
        checks["final_loss_ratio_vs_joint"] = _ratio(s["replay+ewc"]["final_loss"], s["joint"]["final_loss"])
    targets = {"forgetting_ratio_vs_naive": ("<=", 0.5), "plasticity_ratio_vs_naive": (">=", 0.8),
               "final_loss_ratio_vs_joint": ("<=", 1.10)}
    met = {}
    for name, (op, bound) in targets.items():
        if checks.get(name) is not None:
            met[name] = checks[name] <= bound if op == "<=" else checks[name] >= bound
    return {"values": checks, "targets": {k: f"{op} {b}" for k, (op, b) in targets.items()}, "met": met}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b not in (0, 0.0) and math.isfinite(a) and math.isfinite(b) else None


def check_strategies(names: list[str]) -> None:
    """Raise ``ValueError`` naming the first unknown strategy."""
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise ValueError(f"unknown strategy {(unknown or [''])[0]!r} (known: {', '.join(STRATEGIES)})")


def run_forgetting(events: list[MemoryEvent], config: LearnerConfig, strategies: list[str], seeds: list[int],
                   steps: int = 100, foundation_steps: int = 400, n_eval: int = 100, n_foundation: int = 200,
                   n_train: int = 700, foundation_cache: Path | None = None,
                   progress: Callable[[int], None] = lambda _n: None,
                   log: Callable[[str], None] = lambda _m: None) -> dict:
    """Run the protocol for every strategy and seed; returns the JSON-ready results."""
    check_strategies(strategies)
    if not seeds:
        raise ValueError("at least one seed is needed")
    split = split_domains(events, n_eval, n_foundation, n_train)
    # the run's own before/after loss on its new data is a report this benchmark does not use (R is measured
    # on held-out data): evaluate it on a few examples only, so the step budget dominates the time
    consolidation.NEW_LOSS_EVAL_CAP = 16
    evaluator_box: list[Evaluator] = []
    cache = FoundationCache(foundation_cache)
    runs: dict[str, list[SeedRun]] = {name: [] for name in strategies}
    initials, untrained, foundation_seconds = [], [], []
    for seed in seeds:
        state, row_untrained, row0, seconds = train_foundation(split, config, foundation_steps, seed, evaluator_box, cache)
        initials.append(row0)
        untrained.append(row_untrained)
        foundation_seconds.append(seconds)
        progress(1)
        log(f"seed {seed}: foundation {seconds:.0f} s, held-out bits/byte {', '.join(f'{x:.3f}' for x in row0)}")
        for name in strategies:
            run = _run_strategy(STRATEGIES[name], split, config, steps, seed, state, evaluator_box[0],
                                lambda: progress(1))
            runs[name].append(run)
            log(f"seed {seed}: {name} final row {', '.join(f'{x:.3f}' for x in run.R[-1])} ({run.seconds:.0f} s)")
    unit = "bits/byte" if config.model.is_byte_model else "bits/token"
    results = {
        "strategies": {name: _summary(runs[name], initials) for name in strategies},
        "setup": {**split.describe(), "seeds": seeds, "steps_per_stage": steps, "foundation_steps": foundation_steps,
                  "batch_size": config.train.batch_size, "lr": config.train.lr,
                  "replay_ratio": config.train.replay_ratio, "ewc_lambda": config.ewc.lam,
                  "ewc_gamma": config.ewc.gamma, "lora_r": config.model.lora_r, "loss_unit": unit,
                  "foundation_seconds": statistics.fmean(foundation_seconds),
                  "initial": [statistics.fmean(v) for v in zip(*initials)],
                  "untrained": [statistics.fmean(v) for v in zip(*untrained)]},
    }
    results["acceptance"] = acceptance(results)
    return results


def progress_total(n_domains: int, strategies: list[str], seeds: list[int]) -> int:
    """Progress units: one per foundation and one per stage of each strategy."""
    return len(seeds) * (1 + len(strategies) * n_domains)
