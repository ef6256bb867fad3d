"""A base model loaded once, with the weights of one version at a time swapped in place.

- The original base: as loaded (for the byte model, its seeded initial weights).
- A foundation version (byte model only): the base with that version's full weights.
- A LoRA version: the base wrapped by peft, with the version's adapter weights, built with the
  LoRA settings stored with the version (``adapter_config.json``), so profiles with other ranks
  or targets share the same loaded base.

Training happens in place; :meth:`AdaptedModel.trainable_state` and
:meth:`AdaptedModel.restore_trainable` put the weights back when a run is rejected.
``tag`` names what the model holds now (None: weights that no committed version has), so that
checking out the version it already holds costs nothing.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from typing import Any, Callable

import torch
from peft.helpers import disable_input_dtype_casting
from torch import nn

from learner.config import ModelConfig
from learner.model.encoding import Encoder
from learner.model.loading import BaseModel, load_base, lora_config

__all__ = ["AdaptedModel", "LORA_KEYS"]

#: The adapter settings that decide the shape of the LoRA weights.
LORA_KEYS = ("r", "lora_alpha", "target_modules", "fan_in_fan_out")


def _lora_signature(config: dict[str, Any]) -> tuple:
    return tuple(sorted(config[k]) if k == "target_modules" else config.get(k) for k in LORA_KEYS)


class AdaptedModel:
    """A base model and, while a LoRA version is checked out, its peft wrapper."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.base: BaseModel = load_base(cfg)
        self.base.model.eval()
        for p in self.base.model.parameters():
            p.requires_grad_(False)
        self.peft_model = None
        self.encoder = Encoder(self.base.tokenizer, cfg.max_seq_len, cfg.template)
        # the byte model's own weights are small and change with foundation versions: keep the original
        self._original = self.base_state() if self.base.is_byte else None
        self.base_tag: Any = "original"
        self.tag: Any = ("base",)
        self.base_loads = 1

    # -- what it is -----------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        """The module to run: the peft model while an adapter is on, else the base."""
        return self.peft_model if self.peft_model is not None else self.base.model

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.base.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The base weights' dtype (adapters are float32 whatever it is)."""
        return next(self.base.model.parameters()).dtype

    @functools.cached_property
    def packs(self) -> bool:
        """Whether training batches may be packed (:mod:`learner.model.packing`): measured once on the
        base, since an adapter does not change how it attends."""
        from learner.model.packing import packs_sequences

        return packs_sequences(self.base.model, self.tokenizer.pad_id)

    @property
    def has_adapter(self) -> bool:
        return self.peft_model is not None

    def autocast(self) -> Callable[[], Any]:
        """A context factory: bf16 autocast on CUDA, and on a CPU when the base's weights are bf16 (the
        float32 adapters' products then run in bf16 too); nothing for float32 weights on a CPU."""
        if self.device.type == "cuda" or self.dtype == torch.bfloat16:
            return self._in_bf16
        return nullcontext

    @contextmanager
    def _in_bf16(self):
        """bf16 autocast, the adapters' inputs left in bf16: autocast computes their products in bf16, so
        peft's cast of each input to the adapters' float32 would be a copy there and back, and its gradient
        the same, in every adapted layer."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16), disable_input_dtype_casting(self.model):
            yield

    # -- base weights ---------------------------------------------------------------------
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

    def load_base_state(self, tensors: dict[str, torch.Tensor], tag: Any) -> None:
        """Put full weights into the base, in place (an adapter on it is taken off first)."""
        self.drop_adapter()
        missing, unexpected = self.base.model.load_state_dict(tensors, strict=False)
        missing = [m for m in missing if not m.endswith("lm_head.weight")]  # tied to the embeddings
        if missing or unexpected:
            raise ValueError(f"base weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.base.model.tie_weights()
        self.base_tag = tag

    def use_original_base(self) -> None:
        """The base as loaded (no foundation weights, no adapter)."""
        self.drop_adapter()
        if self.base_tag != "original":
            if self._original is None:
                raise ValueError("this base cannot go back to its original weights")
            self.load_base_state(self._original, "original")

    # -- the adapter ----------------------------------------------------------------------
    def drop_adapter(self) -> None:
        """Take the LoRA layers off (the base underneath never changed)."""
        if self.peft_model is not None:
            self.base.model = self.peft_model.unload()
            self.peft_model = None
            self.base.model.eval()

    def fold_adapter(self, tag: Any) -> None:
        """Merge the adapter into the base weights, in place, and take it off: what it learned stays,
        frozen, and the next run starts a fresh adapter on top (progressive adapters). ``tag`` names the
        weights the base now holds. On a bf16 base the folded weights are rounded to bf16, which loses
        part of a small update: measure progressive adapters on a float32 base."""
        if self.peft_model is not None:
            self.base.model = self.peft_model.merge_and_unload()
            self.peft_model = None
            self.base.model.eval()
            self.base_tag = tag

    def start_lora(self, config: dict[str, Any] | None = None) -> None:
        """Wrap the base with a fresh LoRA adapter (B = 0: outputs unchanged), with ``config`` (a stored
        ``adapter_config.json``) or these settings; an adapter of another shape is replaced."""
        from peft import LoraConfig, get_peft_model

        wanted = LoraConfig(**_stored_lora_fields(config)) if config else lora_config(self.cfg, self.base.model)
        if self.peft_model is not None:
            if _lora_signature(self.adapter_config_dict()) == _lora_signature(wanted.to_dict()):
                self._zero_adapter()
                return
            self.drop_adapter()
        self.peft_model = get_peft_model(self.base.model, wanted)
        self.peft_model.eval()

    def _zero_adapter(self) -> None:
        """Re-initialise the adapter in place (A random from torch's generator, B = 0)."""
        from peft.tuners.lora import LoraLayer

        for module in self.peft_model.modules():
            if isinstance(module, LoraLayer):
                module.reset_lora_parameters("default", True)

    def scale_adapter(self, factor: float, towards: dict[str, torch.Tensor] | None = None) -> None:
        """Multiply what the adapter adds to every layer's output by ``factor`` (its B matrices), in place; with
        ``towards`` (an earlier :meth:`trainable_state`), only their change since then: ``B ← B₀ + f·(B − B₀)``."""
        with torch.no_grad():
            for name, weight in self.trainable_parameters(full=False).items():
                if "lora_B" in name:
                    origin = towards[name] if towards is not None else torch.zeros_like(weight)
                    weight.copy_(origin + factor * (weight - origin))

    def adapter_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.peft_model).items()}

    def load_adapter(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Put a stored adapter on the base, in place."""
        from peft import set_peft_model_state_dict

        self.start_lora(config)
        result = set_peft_model_state_dict(self.peft_model, {k: v.to(self.device) for k, v in tensors.items()})
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"adapter weights do not fit the model: unexpected {unexpected[:3]}")

    def adapter_config_dict(self) -> dict:
        config = self.peft_model.peft_config["default"].to_dict()
        config["base_model_name_or_path"] = self.base.name
        return {k: (sorted(v) if isinstance(v, set) else v) for k, v in config.items()}

    # -- training support -----------------------------------------------------------------
    def trainable_parameters(self, full: bool) -> dict[str, nn.Parameter]:
        """Parameters a run trains: all base weights (``full``) or the LoRA ones."""
        if full:
            for p in self.base.model.parameters():
                p.requires_grad_(True)
            return dict(self.base.model.named_parameters())
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def freeze_base(self) -> None:
        for p in self.base.model.parameters():
            p.requires_grad_(False)
        if self.peft_model is not None:
            for n, p in self.peft_model.named_parameters():
                p.requires_grad_("lora_" in n)

    def trainable_state(self, full: bool) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.trainable_parameters(full).items()}

    def restore_trainable(self, state: dict[str, torch.Tensor], full: bool) -> None:
        params = self.trainable_parameters(full)
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def merged(self) -> nn.Module:
        """A plain model with the adapter merged in (for export); the live model is untouched. A bf16
        base is merged in float32, on the CPU: in bf16 the sum would round much of the adapter's small
        update away."""
        import copy

        model = copy.deepcopy(self.model)
        if self.dtype == torch.bfloat16:
            model = model.to(device="cpu", dtype=torch.float32)
        return model.merge_and_unload() if self.peft_model is not None else model


def _stored_lora_fields(config: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored ``adapter_config.json`` that rebuild the same adapter."""
    keep = ("r", "lora_alpha", "lora_dropout", "target_modules", "fan_in_fan_out", "bias", "task_type")
    fields = {k: config[k] for k in keep if k in config}
    fields["target_modules"] = sorted(fields.get("target_modules") or [])
    fields.setdefault("task_type", "CAUSAL_LM")
    return fields
