"""Base models, tokenizers and LoRA wiring.

Two kinds of base (see :mod:`learner.model.bases` for what ``model.base`` may name):

- a pretrained Hugging Face causal LM with its own tokenizer (by default SmolLM2-135M-Instruct);
  weights come from safetensors only, and nothing is fetched from a hub;
- the project's own byte-level Llama-style model (``memstream-byte``), whose token ids are UTF-8
  bytes shifted by 3 (0 = pad, 1 = end of sequence, 2 = unknown), the ByT5 convention, so no
  vocabulary file is needed and ``transformers.ByT5Tokenizer`` reads the same ids after export.

Examples
--------
>>> tok = ByteTokenizer()
>>> tok.encode("hé")
[107, 198, 172]
>>> tok.decode(tok.encode("hé"))
'hé'
>>> from learner.config import ModelConfig
>>> model = build_default_model(ModelConfig(base="memstream-byte", d_model=32, n_layers=1, n_heads=2, d_ff=64))
>>> find_lora_targets(model)
['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learner.model.bases import BYTE_BASE, BaseModelError, cache_root, ensure_gguf_cache, resolve_base
from learner.config import ModelConfig
from learner.model.tokenizers import EOS_ID, PAD_ID, VOCAB_SIZE, ByteTokenizer, HFTokenizer

__all__ = ["BaseModel", "attention_for", "build_default_model", "context_length", "cpu_computes_bf16",
           "find_lora_targets", "load_base", "lora_config", "resolve_device", "resolve_dtype"]



def resolve_device(name: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"model.device = {name!r} but no CUDA device is available")
    return torch.device(name)


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AVX512-BF16 or AMX), where a bf16
    matrix product runs several times faster than a float32 one.

    ``MEMSTREAM_CPU_BF16=0`` (or ``1``) overrides the detection: the test suite sets it, so that its
    numbers do not depend on the CPU it runs on."""
    forced = os.environ.get("MEMSTREAM_CPU_BF16", "")
    if forced in ("0", "1"):
        return forced == "1"
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe is not None and probe() for probe in probes)


def resolve_dtype(name: str, device: torch.device, trains_all_weights: bool = False) -> torch.dtype:
    """``auto`` means bfloat16 where the device computes it natively — CUDA, or a CPU with bf16 matrix
    instructions (:func:`cpu_computes_bf16`) — for a base that LoRA trains (its adapters stay float32);
    float32 elsewhere, and for the byte model, whose foundation run trains every weight.

    >>> resolve_dtype("bfloat16", torch.device("cpu")), resolve_dtype("auto", torch.device("cuda"))
    (torch.bfloat16, torch.bfloat16)
    >>> resolve_dtype("auto", torch.device("cuda"), trains_all_weights=True)
    torch.float32
    """
    if name != "auto":
        return getattr(torch, name)
    if trains_all_weights:
        return torch.float32
    native = device.type == "cuda" or (device.type == "cpu" and cpu_computes_bf16())
    return torch.bfloat16 if native else torch.float32


def attention_for(device: torch.device, dtype: torch.dtype) -> str:
    """The attention implementation: PyTorch's fused SDPA, but plain matrix products for bf16 on a CPU,
    where SDPA's backward pass is slower than the products (docs/benchmarks.md, "bf16 on the CPU").

    >>> attention_for(torch.device("cpu"), torch.bfloat16), attention_for(torch.device("cpu"), torch.float32)
    ('eager', 'sdpa')
    """
    return "eager" if device.type == "cpu" and dtype == torch.bfloat16 else "sdpa"


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
    tokenizer: Any
    name: str
    is_byte: bool  # the project's byte model: its first version is a full-parameter foundation

    @property
    def kind(self) -> str:
        return "byte" if self.is_byte else "hf"


def context_length(config) -> int | None:
    """The longest sequence a Hugging Face model config allows (None when it does not say)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_base(cfg: ModelConfig) -> BaseModel:
    """Load the configured base model on the configured device and dtype (see :mod:`learner.model.bases`)."""
    device = resolve_device(cfg.device)
    resolved = resolve_base(cfg.base)
    dtype = resolve_dtype(cfg.dtype, device, trains_all_weights=resolved.kind == "byte")
    if resolved.kind == "byte":
        model = build_default_model(cfg)
        return BaseModel(model.to(device=device, dtype=dtype), ByteTokenizer(), BYTE_BASE, True)
    folder = resolved.path
    if resolved.kind == "gguf":
        folder = ensure_gguf_cache(resolved.path, cache_root(cfg.cache_dir))
    model = _load_hf_folder(folder, cfg, dtype, attention_for(device, dtype))
    context = context_length(model.config)
    if context is not None and cfg.max_seq_len > context:
        raise BaseModelError(f"model.max_seq_len = {cfg.max_seq_len} is longer than the context of "
                             f"{resolved.name} ({context} tokens)")
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tokenizer = HFTokenizer(folder)
    return BaseModel(model.to(device), tokenizer, resolved.name, False)


def _load_hf_folder(folder: Path, cfg: ModelConfig, dtype: torch.dtype, attention: str) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per load is ours to print, not a bar per file
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise BaseModelError(f"model.base = {cfg.base!r}: {folder} is not a Hugging Face model folder "
                             f"({str(exc).splitlines()[0][:160]})") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise BaseModelError(f"model.base = {cfg.base!r}: a {config.model_type!r} model is not a causal "
                             "language model")
    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                    dtype=dtype, attn_implementation=attention)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise BaseModelError(f"model.base = {cfg.base!r}: a {config.model_type!r} model is not a causal "
                                 "language model") from None
        raise BaseModelError(f"model.base = {cfg.base!r}: cannot load {folder} "
                             f"({str(exc).splitlines()[0][:160]})") from None
    except OSError as exc:
        raise BaseModelError(f"model.base = {cfg.base!r}: cannot load {folder} (safetensors weights only: "
                             f"{str(exc).splitlines()[0][:160]})") from None


def find_lora_targets(model: nn.Module) -> list[str]:
    """Names (last component) of every linear layer except the output head.

    Linear layers are ``nn.Linear`` and the ``Conv1D`` that GPT-2-style models use.
    """
    from transformers.pytorch_utils import Conv1D

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = set()
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)) or module is output:
            continue
        parts = name.split(".")
        if any(p.startswith("lora_") for p in parts):
            continue  # an adapter's own layers (the model is wrapped already)
        names.add(parts[-2] if parts[-1] == "base_layer" and len(parts) > 1 else parts[-1])
    if not names:
        raise ValueError("the model has no linear layers for LoRA; set model.target_modules")
    return sorted(names)


def lora_config(cfg: ModelConfig, model: nn.Module):
    """The peft ``LoraConfig`` these settings give for ``model``."""
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
