"""What an accepted consolidation run hands to the registry: its version's files."""

from __future__ import annotations

from learner.config import LearnerConfig
from learner.model.adapted import AdaptedModel
from learner.model.gguf_lora import version_exports
from learner.store.versions import FOUNDATION, adapter_files
from learner.training.ewc import EWC, fisher_after_run
from learner.training.plan import Plan
from learner.training.progress import RunClock

__all__ = ["version_files"]


def version_files(plan: Plan, live: AdaptedModel, cfg: LearnerConfig, ewc: EWC, train_examples: list, params: dict,
                  metrics: dict, clock: RunClock, profile: str) -> dict[str, bytes]:
    """An accepted run's version files: the weights, the EWC state with this run's Fisher (LoRA runs), the
    exports for inference servers; the Fisher method and skipped exports go into ``metrics``."""
    new_ewc = ewc
    if plan.mode != FOUNDATION and cfg.ewc.enabled:
        fisher, metrics["fisher_method"] = fisher_after_run(live, train_examples, cfg.ewc.fisher_samples, plan.seed)
        new_ewc = ewc.updated(fisher, {n: p.detach() for n, p in params.items()})
        clock.lap("fisher_s")
    files = adapter_files(live, plan.mode, new_ewc)
    exported, skipped = version_exports(live, cfg.registry, {"profile": profile, "run_id": plan.run_id})
    files.update(exported)
    if skipped:
        metrics["exports_skipped"] = skipped
    clock.lap("export_s")
    return files
