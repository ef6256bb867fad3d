"""Export a version for inference servers: a merged Hugging Face folder, or a GGUF file.

- ``safetensors``: ``model.safetensors``, ``config.json``, the tokenizer and
  ``memstream_export.json`` (the lineage), LoRA merged into the base.
- ``gguf``: the merged model as one GGUF file that llama.cpp and Ollama load, with ``f16``
  weights (norms stay f32) or ``q8_0``. Llama-family models only. The tokenizer goes in too:
  copied as it is from the GGUF the base came from (SmolLM2 by default), or built from a BPE
  ``tokenizer.json`` (pre-tokenizer ``default``; llama.cpp may want the model's own name: pass it).

Both appear whole or not at all (written beside the target, then renamed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from learner.model.adapted import AdaptedModel
from learner.model.bases import resolve_base
from learner.store.storage import fsync_dir, give_default_mode, sha256_file

__all__ = ["ExportError", "GGUF_QUANTS", "export_gguf", "export_merged", "write_gguf"]

GGUF_QUANTS = ("f16", "q8_0")


class ExportError(ValueError):
    """A model or option the export cannot honour; the message says why."""


def _free_target(out: Path) -> None:
    occupied = out.is_file() or (out.is_dir() and any(out.iterdir()))
    if occupied:
        raise FileExistsError(f"export target {str(out)!r} already exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)


def export_merged(live: AdaptedModel, out: str | Path, lineage: dict[str, Any]) -> dict[str, str]:
    """Write ``model.safetensors``, ``config.json``, the tokenizer and ``memstream_export.json``.

    Returns the sha256 of each file written.
    """
    out = Path(out)
    _free_target(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        merged = live.merged()
        merged.save_pretrained(tmp, safe_serialization=True)
        live.tokenizer.to_hf().save_pretrained(tmp)
        (tmp / "memstream_export.json").write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str))
        for file in tmp.iterdir():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        give_default_mode(tmp)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {f.name: sha256_file(f) for f in sorted(out.iterdir())}


def _permute(weights, n_head: int, n_head_kv: int):
    """llama.cpp's layout of the q and k projections (rotary halves interleaved); its reader undoes it."""
    if n_head_kv != n_head:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tokenizer_fields(live: AdaptedModel, pre: str | None) -> list[tuple[str, Any, Any]]:
    """``(key, value, type)`` of the tokenizer metadata: copied from the base's own GGUF when it came
    from one, else built from a BPE ``tokenizer.json``."""
    import gguf

    resolved = resolve_base(live.base.name)
    if resolved.kind == "gguf":
        reader = gguf.GGUFReader(str(resolved.path))
        fields = []
        for key, field in reader.fields.items():
            if key.startswith("tokenizer."):
                sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
                fields.append((key, field.contents(), (field.types[0], sub)))
        return fields
    hf = getattr(live.tokenizer, "hf", None)
    backend = getattr(hf, "backend_tokenizer", None) or getattr(hf, "_tokenizer", None)
    if backend is None:
        raise ExportError("GGUF export needs a model with a BPE tokenizer (the byte model has none): "
                          "export --format safetensors instead")
    spec = json.loads(backend.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        raise ExportError(f"GGUF export writes BPE tokenizers only; this one is {model.get('type')!r}")
    vocab = model["vocab"]
    tokens = [None] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    types = [1] * len(tokens)  # normal
    for added in spec.get("added_tokens", []):
        if added["id"] >= len(tokens):
            tokens.extend([None] * (added["id"] + 1 - len(tokens)))
            types.extend([1] * (added["id"] + 1 - len(types)))
        tokens[added["id"]] = added["content"]
        types[added["id"]] = 3 if added.get("special") else 4  # control or user-defined
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    str_type, arr = gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY
    fields = [("tokenizer.ggml.model", "gpt2", (str_type, None)), ("tokenizer.ggml.pre", pre or "default", (str_type, None)),
              ("tokenizer.ggml.tokens", tokens, (arr, str_type)),
              ("tokenizer.ggml.token_type", types, (arr, gguf.GGUFValueType.INT32)),
              ("tokenizer.ggml.merges", merges, (arr, str_type))]
    u32 = gguf.GGUFValueType.UINT32
    for key, value in (("bos", hf.bos_token_id), ("eos", hf.eos_token_id), ("unknown", hf.unk_token_id),
                       ("padding", hf.pad_token_id)):
        if value is not None:
            fields.append((f"tokenizer.ggml.{key}_token_id", int(value), (u32, None)))
    if getattr(hf, "chat_template", None):
        fields.append(("tokenizer.chat_template", hf.chat_template, (str_type, None)))
    return fields


def export_gguf(live: AdaptedModel, out: str | Path, lineage: dict[str, Any], quant: str = "f16",
                pre: str | None = None) -> dict[str, str]:
    """Write the merged model as one GGUF file; returns ``{file name: sha256}``."""
    import gguf
    import numpy as np
    import torch

    if quant not in GGUF_QUANTS:
        raise ExportError(f"GGUF quantization {quant!r} is not one of {', '.join(GGUF_QUANTS)}")
    merged = live.merged()
    config = merged.config
    if config.model_type != "llama":
        raise ExportError(f"GGUF export writes Llama-family models; this one is {config.model_type!r}")
    fields = _tokenizer_fields(live, pre)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)

    def fill(writer) -> None:
        writer.add_name(f"memstream {lineage.get('profile', '')} v{lineage.get('version', '')}".strip())
        writer.add_description(json.dumps(lineage, sort_keys=True, default=str)[:4000])
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_block_count(config.num_hidden_layers)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_dimension_count(head_dim)
        rope = getattr(config, "rope_parameters", None) or {}
        writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if quant == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
        for key, value, (kind, sub) in fields:
            writer.add_key_value(key, value, kind, sub_type=sub)
        state = merged.state_dict()
        tied = getattr(config, "tie_word_embeddings", False)
        for hf_name, tensor in state.items():
            if hf_name == "lm_head.weight" and tied:
                continue  # llama.cpp reads the embeddings as the output head when there is none
            base, suffix = hf_name.rsplit(".", 1)
            name = names.get_name(base)
            if name is None:
                continue  # rotary caches and the like: not weights
            data = tensor.detach().to(torch.float32).cpu().numpy()
            if base.endswith("q_proj"):
                data = _permute(data, n_head, n_head)
            elif base.endswith("k_proj"):
                data = _permute(data, n_head, n_kv)
            if data.ndim == 1:
                writer.add_tensor(f"{name}.{suffix}", data.astype(np.float32))
            elif quant == "q8_0" and data.shape[-1] % 32 == 0:
                packed = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
                writer.add_tensor(f"{name}.{suffix}", packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                writer.add_tensor(f"{name}.{suffix}", data.astype(np.float16))

    return write_gguf(Path(out), fill)


def write_gguf(out: Path, fill) -> dict[str, str]:
    """A llama-architecture GGUF file that ``fill(writer)`` gives its keys and tensors, written beside ``out``
    and renamed into place (readable as a plain ``open``'s); returns ``{file name: sha256}``."""
    import gguf

    _free_target(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        fill(writer)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        give_default_mode(Path(tmp))
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {out.name: sha256_file(out)}
