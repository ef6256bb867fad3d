"""The model side of a profile's learner: the process's loaded base holding the profile's current
version, and what is asked of it (generation, an event's loss, the EWC state, another version).

:class:`~learner.online.OnlineLearner` is one; anything with a ``config`` (a
:class:`~learner.config.LearnerConfig`) and a ``registry`` (the profile's
:class:`~learner.store.registry.ModelRegistry`) can be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.events import MemoryEvent

if TYPE_CHECKING:
    from learner.config import LearnerConfig
    from learner.model.adapted import AdaptedModel
    from learner.store.registry import ModelRegistry
    from learner.training.ewc import EWC

__all__ = ["ProfileModel"]


class ProfileModel:
    """The current version of a profile on the process's shared model (torch loads on first use)."""

    config: "LearnerConfig"
    registry: "ModelRegistry"

    @property
    def trainer(self):
        """The trainer (loaded base) this process shares between its profiles."""
        from learner.training.trainer import shared_trainer

        return shared_trainer(self.config.model)

    @property
    def live(self) -> "AdaptedModel":
        """The process's loaded model, holding this profile's current version (verified when loaded).

        The model is shared by every profile of the process: each access puts this profile's
        version on it (nothing is read when it already holds it)."""
        return self.trainer.checkout(self.registry, self.registry.current_version, self.config)

    @property
    def model(self):
        """The current model (peft-wrapped once LoRA versions exist)."""
        return self.live.model

    @property
    def tokenizer(self):
        return self.live.tokenizer

    @property
    def ewc(self) -> "EWC":
        """The EWC state saved with the current version (read from disk)."""
        from learner.store.versions import load_ewc

        return load_ewc(self.registry, self.registry.current_version, self.config)

    def model_at(self, version: int | None) -> "AdaptedModel":
        """A separate model at ``version`` (None = the original base), verified; the shared one is untouched."""
        from learner.store.versions import load_model_at

        return load_model_at(self.registry, version, self.config)

    def generate(self, prompt: str, max_new_tokens: int = 96, temperature: float = 0.0,
                 top_k: int = 40, seed: int = 0) -> str:
        """The current version's answer to ``prompt`` (greedy by default)."""
        return self.answer([prompt], max_new_tokens, temperature, top_k, seed)[0]

    def answer(self, prompts: list[str], max_new_tokens: int = 96, temperature: float = 0.0,
               top_k: int = 40, seed: int = 0) -> list[str]:
        """The current version's answers to many prompts, in batches."""
        from learner.model.generation import answer

        return answer(self.live, prompts, max_new_tokens, temperature, top_k, seed)

    def event_loss(self, event: MemoryEvent) -> float:
        """Loss (nats per target token) of one event under the current version: its surprise."""
        from learner.model.losses import mean_loss

        live = self.live
        return mean_loss(live.model, [live.encoder.encode(event)], live.tokenizer.pad_id, device=live.device)
