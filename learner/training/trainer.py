"""The trainer: one base model loaded once, on which any profile's next version is trained.

Each run checks out its parent version (adapter, and for the byte model its foundation weights)
in place, verified against the version's manifest, and loads the EWC state saved with it; the
base is never loaded again. ``base_loads`` and ``runs`` go into every run's metrics, so the
load-once promise can be seen from outside (``memstream registry show``, ModelUpdated events).

One process holds one trainer per kind of base it has been asked for (:func:`shared_trainer`):
``memstream learn`` on several profiles, a notebook with several learners, and the stream
worker's trainer process all train every profile on the same loaded base.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from learner.model.adapted import AdaptedModel
from learner.config import LearnerConfig, ModelConfig
from learner.training.loop import run_consolidation
from learner.memory.curator import curate
from learner.model.encoding import Encoder
from learner.training.rehearsal import Rehearsal
from learner.store.registry import ModelRegistry
from learner.training.plan import Plan, RunResult
from learner.store.versions import FOUNDATION, checkout, load_ewc

__all__ = ["Trainer", "adopt_trained_weights", "shared_trainer"]

#: settings that decide what is loaded; the others (LoRA shape, sequence length) change per run
LOAD_KEYS = ("base", "cache_dir", "device", "dtype", "gradient_checkpointing", "d_model", "n_layers", "n_heads",
             "d_ff", "init_seed")
MAX_TRAINERS = 4


def load_key(cfg: ModelConfig) -> tuple:
    key = tuple(getattr(cfg, k) for k in LOAD_KEYS)
    if not cfg.is_byte_model:  # the byte model's sizes mean nothing for a pretrained base
        key = key[:5]
    if cfg.is_byte_model:  # the byte model's positions table follows max_seq_len
        key += (cfg.max_seq_len,)
    return key


class Trainer:
    """Train versions of any profile on one loaded base (see the module docstring)."""

    def __init__(self, model_cfg: ModelConfig):
        self.live = AdaptedModel(model_cfg)
        self.runs = 0
        self._rehearsal: dict[tuple, Rehearsal] = {}

    def rehearsal(self, config: LearnerConfig, say: Callable[[str], None] = lambda _m: None) -> Rehearsal | None:
        """The base model's own text to rehearse and to probe (:mod:`learner.training.rehearsal`); None for the
        byte model or when ``replay.base_rehearsal`` is 0. Sampled once per base (then read from the cache);
        ``say`` hears of that work before it starts."""
        if config.model.is_byte_model or config.replay.base_rehearsal <= 0:
            return None
        key = (config.replay.base_samples, config.train.base_probe_size, config.train.seed, config.model.max_seq_len)
        if key not in self._rehearsal:
            from learner.training.rehearsal import prepare

            self._rehearsal[key] = prepare(self.checkout(None, None, config), config, say)
        return self._rehearsal[key]

    def use_settings(self, model_cfg: ModelConfig) -> AdaptedModel:
        """Point the live model at ``model_cfg``'s LoRA and sequence settings (the load stays)."""
        live = self.live
        if (model_cfg.max_seq_len, model_cfg.template) != (live.cfg.max_seq_len, live.cfg.template):
            live.encoder = Encoder(live.tokenizer, model_cfg.max_seq_len, model_cfg.template)
        live.cfg = model_cfg
        return live

    def checkout(self, registry: ModelRegistry | None, version: int | None, config: LearnerConfig) -> AdaptedModel:
        """The live model, holding ``version`` of ``registry``'s profile (None: the original base)."""
        live = self.use_settings(config.model)
        checkout(live, registry, version)
        return live

    def run(self, plan: Plan, registry: ModelRegistry | None, config: LearnerConfig, profile: str,
            should_stop: Callable[[], bool] = lambda: False, log: Callable[[str], None] = lambda _m: None) -> RunResult:
        """Check out the plan's parent version and its EWC state, then train and gate (the live model keeps
        the new weights when accepted, the parent's otherwise)."""
        started = time.perf_counter()
        rehearsal = self.rehearsal(config, lambda m: log(f"[{profile}] {m}")) if plan.mode != "foundation" else None
        live = self.checkout(registry, plan.parent_version, config)
        ewc = load_ewc(registry, plan.parent_version, config)
        checkout_s = round(time.perf_counter() - started, 3)
        result = run_consolidation(plan, live, config, ewc, profile, should_stop, log, rehearsal)
        self.runs += 1
        result.metrics.update(base_loads=live.base_loads, trainer_runs=self.runs, checkout_s=checkout_s,
                              memories=curate(plan.new, config.scheduler.min_examples))
        return result


_TRAINERS: "OrderedDict[tuple, Trainer]" = OrderedDict()


def shared_trainer(model_cfg: ModelConfig) -> Trainer:
    """This process's trainer for ``model_cfg``'s base (loaded on first use, then kept)."""
    key = load_key(model_cfg)
    trainer = _TRAINERS.get(key)
    if trainer is None:
        trainer = Trainer(model_cfg)
        _TRAINERS[key] = trainer
        while len(_TRAINERS) > MAX_TRAINERS:
            _TRAINERS.popitem(last=False)
    _TRAINERS.move_to_end(key)
    return trainer


def adopt_trained_weights(model_cfg: ModelConfig, registry: ModelRegistry, plan: Plan, version: int) -> None:
    """The in-process trainer holds exactly the committed weights: say so, to skip reloading them."""
    live = shared_trainer(model_cfg).live
    if live.tag == ("trained", plan.run_id):
        live.tag = (str(registry.directory), version, registry.entry(version).get("manifest_sha256"))
        if plan.mode == FOUNDATION:
            live.base_tag = live.tag
