"""Base models, tokenizers and LoRA wiring.

The default base model is the project's own: a small byte-level Llama-style causal
transformer (``transformers.LlamaForCausalLM``) whose token ids are UTF-8 bytes shifted
by 3 (0 = pad, 1 = end of sequence, 2 = unknown), the ByT5 convention, so no vocabulary
file is needed and ``transformers.ByT5Tokenizer`` reads the same ids after export.

Any Hugging Face causal LM on a local path is a config value away (``model.base``);
it is loaded with ``local_files_only=True`` and safetensors weights only.

Examples
--------
>>> tok = ByteTokenizer()
>>> tok.encode("hé")
[107, 198, 172]
>>> tok.decode(tok.encode("hé"))
'hé'
>>> from learner.config import ModelConfig
>>> model = build_default_model(ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64))
>>> find_lora_targets(model)
['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from learner.config import ModelConfig

__all__ = [
    "BYTE_OFFSET",
    "DEFAULT_BASE",
    "ByteTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "build_default_model",
    "find_lora_targets",
    "load_base",
    "lora_config",
    "resolve_device",
    "resolve_dtype",
]

DEFAULT_BASE = "memstream-byte"
BYTE_OFFSET = 3
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
VOCAB_SIZE = 256 + BYTE_OFFSET


class Tokenizer(Protocol):
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes shifted by 3 (the ByT5 convention)."""

    eos_id = EOS_ID
    pad_id = PAD_ID

    def encode(self, text: str) -> list[int]:
        return [b + BYTE_OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: list[int]) -> str:
        return bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < VOCAB_SIZE).decode("utf-8", errors="replace")

    def to_hf(self):
        """The equivalent ``transformers`` tokenizer, for export."""
        from transformers import ByT5Tokenizer

        return ByT5Tokenizer(extra_ids=0)


class HFTokenizer:
    """A Hugging Face tokenizer loaded from a local path."""

    def __init__(self, path: str):
        from transformers import AutoTokenizer

        self.hf = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.eos_id = self.hf.eos_token_id if self.hf.eos_token_id is not None else 0
        self.pad_id = self.hf.pad_token_id if self.hf.pad_token_id is not None else self.eos_id

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.hf.decode(ids, skip_special_tokens=True)

    def to_hf(self):
        return self.hf


def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"model.device = {name!r} but no CUDA device is available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` means bfloat16 on CUDA, float32 on CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def default_model_config(cfg: ModelConfig):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=max(cfg.max_seq_len, 64),
        bos_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )


def build_default_model(cfg: ModelConfig) -> nn.Module:
    """The project's byte-level model with deterministic initial weights (``cfg.init_seed``)."""
    from transformers import LlamaForCausalLM

    config = default_model_config(cfg)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = LlamaForCausalLM(config)
    return model


@dataclass
class BaseModel:
    """A loaded base model with its tokenizer and the name the registry records."""

    model: nn.Module
    tokenizer: Tokenizer
    name: str
    is_default: bool


def load_base(cfg: ModelConfig) -> BaseModel:
    """Load the configured base model on the configured device and dtype."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.is_default_model:
        model = build_default_model(cfg)
        return BaseModel(model.to(device=device, dtype=dtype), ByteTokenizer(), DEFAULT_BASE, True)
    path = Path(os.path.expanduser(cfg.base))
    if not path.is_dir():
        raise ValueError(
            f"model.base = {cfg.base!r}: not a local model directory (use 'memstream-byte' or a path "
            "to a Hugging Face causal LM saved with save_pretrained)"
        )
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path, local_files_only=True, use_safetensors=True, dtype=dtype
    )
    return BaseModel(model.to(device), HFTokenizer(str(path)), str(path.resolve()), False)


def find_lora_targets(model: nn.Module) -> list[str]:
    """Names (last component) of every linear layer except the output head.

    Linear layers are ``nn.Linear`` and the ``Conv1D`` that GPT-2-style models use.
    """
    from transformers.pytorch_utils import Conv1D

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, Conv1D)) and module is not output
    }
    if not names:
        raise ValueError("the model has no linear layers for LoRA; set model.target_modules")
    return sorted(names)


def lora_config(cfg: ModelConfig, model: nn.Module):
    from peft import LoraConfig
    from transformers.pytorch_utils import Conv1D

    targets = list(cfg.target_modules) or find_lora_targets(model)
    conv1d = any(isinstance(m, Conv1D) and name.rsplit(".", 1)[-1] in targets for name, m in model.named_modules())
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,  # GPT-2's Conv1D stores weights transposed
    )
