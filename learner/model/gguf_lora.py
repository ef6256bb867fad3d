"""A version's LoRA adapter as a GGUF adapter file: llama.cpp (and Ollama's ``ADAPTER``) apply it, unmerged,
over the base's own GGUF — a few MB per version instead of the whole model.

The file holds ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` and the
base's architecture, and for each adapted linear layer its two factors as ``blk.N.<tensor>.weight.lora_a``
(r × in) and ``.lora_b`` (out × r), named as llama.cpp names the base's tensors. llama.cpp adds
``alpha / r · B(A·x)`` to the layer's output, PEFT's own scale. The base's GGUF stores the q and k
projections with their rotary halves interleaved, so the rows of their ``lora_b`` are interleaved the
same way (``lora_a`` acts on the input and stays). Llama-family bases only.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from learner.model.adapted import AdaptedModel
from learner.model.export import ExportError, _permute, write_gguf
from learner.store.versions import VERSION_EXPORTS

__all__ = ["export_gguf_lora", "gguf_lora_tensors", "version_exports"]


def gguf_lora_tensors(live: AdaptedModel) -> tuple[dict[str, Any], float]:
    """The adapter's factors under their llama.cpp names (float32 numpy arrays), and the alpha to write."""
    import gguf
    import torch

    if not live.has_adapter:
        raise ExportError("this version has no LoRA adapter (its weights are the base's own): "
                          "export --format gguf instead")
    config = getattr(live.base.model, "config", None)
    kind = getattr(config, "model_type", type(live.base.model).__name__)
    if kind != "llama":
        raise ExportError(f"GGUF adapters are written for Llama-family bases; this one is {kind!r}")
    lora = live.peft_model.peft_config["default"]
    if getattr(lora, "modules_to_save", None):
        raise ExportError("a GGUF adapter holds LoRA factors only; this adapter also saves whole modules")
    alpha = float(lora.lora_alpha) * (math.sqrt(lora.r) if getattr(lora, "use_rslora", False) else 1.0)
    n_head, n_kv = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tensors = {}
    for key, tensor in live.adapter_state().items():
        module, factor = key.rsplit(".lora_", 1)  # "...layers.0.self_attn.q_proj", "A.weight"
        module = module.removeprefix("base_model.model.")
        name = names.get_name(module)
        if name is None:
            raise ExportError(f"llama.cpp has no tensor for the adapted module {module!r}")
        data = tensor.to(torch.float32).numpy()
        if factor.startswith("B") and module.endswith(("q_proj", "k_proj")):
            data = _permute(data, n_head, n_head if module.endswith("q_proj") else n_kv)
        tensors[f"{name}.weight.lora_{factor[0].lower()}"] = data
    return tensors, alpha


def export_gguf_lora(live: AdaptedModel, out: str | Path, lineage: dict[str, Any]) -> dict[str, str]:
    """Write the version's adapter as one GGUF adapter file (f32 factors); returns ``{file name: sha256}``."""
    import gguf

    tensors, alpha = gguf_lora_tensors(live)

    def fill(writer) -> None:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(f"memstream {lineage.get('profile', '')} v{lineage.get('version', '')} adapter".strip())
        writer.add_description(json.dumps(lineage, sort_keys=True, default=str)[:4000])
        for name, data in sorted(tensors.items()):
            writer.add_tensor(name, data)

    return write_gguf(Path(out), fill)


def version_exports(live: AdaptedModel, settings, lineage: dict[str, Any]) -> tuple[dict[str, bytes], str]:
    """The GGUF files a new version holds beside its adapter (``settings``: the ``[registry]`` section's
    ``gguf_lora`` and ``gguf``), and why one was not written ("" when all were): a base the writers do
    not know costs the run nothing."""
    from learner.model.export import export_gguf

    wanted = [("gguf_lora", lambda out: export_gguf_lora(live, out, lineage))] \
        if settings.gguf_lora and live.has_adapter else []
    if settings.gguf != "off":
        wanted.append(("gguf", lambda out: export_gguf(live, out, lineage, quant=settings.gguf)))
    files, skipped = {}, []
    with tempfile.TemporaryDirectory(prefix="memstream-export-") as folder:
        for key, write in wanted:
            out = Path(folder) / VERSION_EXPORTS[key]
            try:
                write(out)
            except ExportError as exc:
                skipped.append(f"{VERSION_EXPORTS[key]}: {exc}")
                continue
            files[out.name] = out.read_bytes()
    return files, "; ".join(skipped)
