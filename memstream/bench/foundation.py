"""The forgetting benchmark's data and first stage: the domains split into stages and held-out sets, the byte model's foundation run on the first domain,
trained once per seed and settings and cached, and the evaluator every stage shares."""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from contracts.events import MemoryEvent
from learner.config import LearnerConfig
from learner.model.adapted import AdaptedModel
from learner.model.losses import mean_loss
from learner.store.storage import atomic_write_bytes, sha256_bytes
from learner.store.versions import FOUNDATION
from learner.training.ewc import EWC
from learner.training.loop import run_consolidation
from learner.training.plan import Plan

__all__ = ["DomainSplit", "Evaluator", "FoundationCache", "split_domains", "stage_config", "train_foundation"]


class Evaluator:
    """Held-out loss per domain, in bits per byte (or per token), with the examples encoded once."""

    def __init__(self, split: DomainSplit, live: AdaptedModel):
        self.examples = {d: [live.encoder.encode(e) for e in split.heldout[d]] for d in split.domains}
        self.domains = split.domains

    def row(self, live: AdaptedModel) -> list[float]:
        return [mean_loss(live.model, self.examples[d], live.tokenizer.pad_id, device=live.device) / math.log(2)
                for d in self.domains]


class FoundationCache:
    """Trained foundations on disk (safetensors + a JSON sidecar with its sha256), keyed by everything that
    shapes them, so a rerun with other strategies or stage settings skips the costliest part.
    A file whose sha256 does not match is ignored and retrained, never trusted."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    @staticmethod
    def key(split: DomainSplit, cfg: LearnerConfig, steps: int, seed: int) -> str:
        t = cfg.train  # only what the foundation run reads: LoRA-stage settings must not invalidate it
        train = {k: getattr(t, k) for k in ("batch_size", "foundation_lr", "warmup_frac", "min_lr_ratio",
                                            "weight_decay", "grad_clip", "seed")}
        shape = {"model": asdict(cfg.model), "train": train, "steps": steps, "seed": seed,
                 "events": [e.id for e in split.foundation], "heldout": {d: [e.id for e in v]
                                                                         for d, v in split.heldout.items()}}
        return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict] | None:
        if self.directory is None:
            return None
        weights, meta = self.directory / f"{key}.safetensors", self.directory / f"{key}.json"
        try:
            info = json.loads(meta.read_text())
            data = weights.read_bytes()
        except (OSError, ValueError):
            return None
        if sha256_bytes(data) != info.get("sha256"):
            return None
        return load_safetensors(data), info

    def save(self, key: str, state: dict[str, torch.Tensor], info: dict) -> None:
        if self.directory is None:
            return
        data = save_safetensors({k: v.contiguous() for k, v in state.items()})
        atomic_write_bytes(self.directory / f"{key}.safetensors", data)
        atomic_write_bytes(self.directory / f"{key}.json", json.dumps({**info, "sha256": sha256_bytes(data)}).encode())


def train_foundation(split: DomainSplit, config: LearnerConfig, steps: int, seed: int, evaluator_box: list,
                cache: FoundationCache) -> tuple[dict[str, torch.Tensor] | None, list[float], list[float], float]:
    """Train (or load) the shared foundation; returns its weights, the untrained row, its row and seconds.

    A pretrained base needs none: it is its own foundation (weights None, its row twice, 0 s)."""
    model_cfg = replace(config.model, init_seed=seed)
    cfg = replace(stage_config(config, steps, ewc=False), model=model_cfg)
    live = AdaptedModel(cfg.model)
    if not evaluator_box:
        evaluator_box.append(Evaluator(split, live))
    evaluator = evaluator_box[0]
    if not cfg.model.is_byte_model:
        row = evaluator.row(live)
        return None, row, row, 0.0
    key = FoundationCache.key(split, cfg, steps, seed)
    cached = cache.load(key)
    if cached is not None:
        state, info = cached
        return state, info["untrained"], info["row"], info["seconds"]
    initial = evaluator.row(live)
    started = time.perf_counter()
    plan = Plan(trigger="foundation", mode=FOUNDATION, new=split.foundation, replay=[],
                probe=split.foundation[:16], parent_version=None, seed=seed)
    outcome = run_consolidation(plan, live, cfg, EWC(0.0))
    if not outcome.accepted:
        raise RuntimeError(f"the foundation run failed: {outcome.reason}")
    seconds = time.perf_counter() - started
    state = {k: v.clone() for k, v in live.base_state().items()}
    row = evaluator.row(live)
    cache.save(key, state, {"untrained": initial, "row": row, "seconds": seconds})
    return state, initial, row, seconds


@dataclass
class DomainSplit:
    domains: list[str]
    train: dict[str, list[MemoryEvent]]
    foundation: list[MemoryEvent]
    heldout: dict[str, list[MemoryEvent]]

    def describe(self) -> dict:
        return {"domains": self.domains, "train": {d: len(v) for d, v in self.train.items()},
                "foundation": len(self.foundation), "heldout": {d: len(v) for d, v in self.heldout.items()}}


def split_domains(events: list[MemoryEvent], n_eval: int = 100, n_foundation: int = 200,
                  n_train: int = 700, split_seed: int = 0, order: list[str] | None = None) -> DomainSplit:
    """Group ``events`` by ``meta.domain`` and split each group (see the module docstring).

    >>> evs = [MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": float(i), "kind": "k",
    ...        "text": f"t{i}", "meta": {"domain": "ab"[i % 2]}}) for i in range(20)]
    >>> split = split_domains(evs, n_eval=2, n_foundation=3, n_train=4)
    >>> split.describe()
    {'domains': ['a', 'b'], 'train': {'a': 4, 'b': 4}, 'foundation': 6, 'heldout': {'a': 2, 'b': 2}}
    """
    groups: dict[str, list[MemoryEvent]] = {}
    for event in events:
        domain = event.domain
        if domain is None:
            continue
        groups.setdefault(str(domain), []).append(event)
    domains = order or list(groups)
    missing = [d for d in domains if d not in groups]
    if missing:
        raise ValueError(f"no events with meta.domain {missing[0]!r} (found: {', '.join(groups) or 'none'})")
    if len(domains) < 2:
        raise ValueError(f"the forgetting benchmark needs at least 2 domains in meta.domain, found {len(domains)}")
    rng = random.Random(split_seed)
    train, heldout, foundation = {}, {}, []
    for domain in domains:
        group = list(groups[domain])
        rng.shuffle(group)
        if len(group) < n_eval + n_foundation + 2:
            raise ValueError(f"domain {domain!r} has {len(group)} events; the split needs at least "
                             f"{n_eval + n_foundation + 2} (n_eval {n_eval} + n_foundation {n_foundation} + 2)")
        heldout[domain] = group[:n_eval]
        foundation += group[n_eval:n_eval + n_foundation]
        train[domain] = group[n_eval + n_foundation:][:n_train]
    rng.shuffle(foundation)
    return DomainSplit(domains, train, foundation, heldout)


def stage_config(config: LearnerConfig, steps: int, ewc: bool) -> LearnerConfig:
    """``config`` with the gate off, a fixed step count, and EWC on only with ``ewc`` (the strategy uses it)."""
    train = replace(config.train, max_steps=steps, epochs=10_000, foundation_epochs=10_000,
                    gate_tolerance=1e9, gate_max_forgetting=1e9, gate_base_tolerance=1e9, probe_size=min(config.train.probe_size, 16))
    return replace(config, train=train, ewc=replace(config.ewc, enabled=ewc))
