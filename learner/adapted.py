"""The live model of one profile: a base model, optionally with a LoRA adapter on top.

- Before any version: the base as configured (for the default model, its seeded initial weights).
- After a foundation version: the base with the foundation's full weights.
- After a LoRA version: that base wrapped by peft, with the version's adapter weights.

Training happens in place; :meth:`AdaptedModel.trainable_state` and
:meth:`AdaptedModel.restore_trainable` put the weights back when a run is rejected.
"""

from __future__ import annotations

import torch
from torch import nn

from learner.config import ModelConfig
from learner.model import BaseModel, load_base, lora_config

__all__ = ["AdaptedModel"]


class AdaptedModel:
    """A base model and, once LoRA starts, its peft wrapper."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.base: BaseModel = load_base(cfg)
        self.base.model.eval()
        self.peft_model = None

    @property
    def model(self) -> nn.Module:
        """The module to run: the peft model once LoRA started, else the base."""
        return self.peft_model if self.peft_model is not None else self.base.model

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.base.model.parameters()).device

    @property
    def has_adapter(self) -> bool:
        return self.peft_model is not None

    def base_state(self) -> dict[str, torch.Tensor]:
        """Full base weights (without LoRA), detached CPU copies, tied weights once."""
        module = self.base.model if self.peft_model is None else self.peft_model.get_base_model()
        state = {}
        seen = set()
        for name, tensor in module.state_dict().items():
            if "lora_" in name:
                continue
            key = tensor.data_ptr()
            if key in seen:
                continue  # tied embeddings: keep one copy; loading re-ties them
            seen.add(key)
            state[name.replace(".base_layer", "")] = tensor.detach().cpu().clone()
        return state

    def load_base_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load full weights into the base (a base wrapped by an adapter is rebuilt first)."""
        if self.peft_model is not None:  # peft changed the base in place: start from a clean one
            self.base = load_base(self.cfg)
            self.base.model.eval()
            self.peft_model = None
        missing, unexpected = self.base.model.load_state_dict(tensors, strict=False)
        missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
        if missing or unexpected:
            raise ValueError(f"base weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.base.model.tie_weights()

    def start_lora(self) -> None:
        """Wrap the base with a fresh LoRA adapter (B = 0: outputs unchanged)."""
        from peft import get_peft_model

        if self.peft_model is None:
            self.peft_model = get_peft_model(self.base.model, lora_config(self.cfg, self.base.model))
            self.peft_model.eval()

    def adapter_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.peft_model).items()}

    def load_adapter_state(self, tensors: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        self.start_lora()
        result = set_peft_model_state_dict(self.peft_model, {k: v.to(self.device) for k, v in tensors.items()})
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"adapter weights do not fit the model: unexpected {unexpected[:3]}")

    def adapter_config_dict(self) -> dict:
        config = self.peft_model.peft_config["default"].to_dict()
        config["base_model_name_or_path"] = self.base.name
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}

    def trainable_parameters(self, full: bool) -> dict[str, nn.Parameter]:
        """Parameters a run trains: all base weights (``full``) or the LoRA ones."""
        if full:
            for p in self.base.model.parameters():
                p.requires_grad_(True)
            return dict(self.base.model.named_parameters())
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def trainable_state(self, full: bool) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.trainable_parameters(full).items()}

    def restore_trainable(self, state: dict[str, torch.Tensor], full: bool) -> None:
        params = self.trainable_parameters(full)
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def merged(self) -> nn.Module:
        """A plain model with the adapter merged in (for export); the live model is untouched."""
        import copy

        if self.peft_model is None:
            return copy.deepcopy(self.base.model)
        return copy.deepcopy(self.peft_model).merge_and_unload()
