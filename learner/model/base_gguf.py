"""The base model as one f16 GGUF file, written once per base into the model cache: what llama.cpp loads
under a version's GGUF adapter.

The base's own GGUF (a quantized file, for the default model) is not used for that: torch trains over
its dequantized weights, and llama.cpp over the quantized ones answers differently, so the adapter goes
over the weights it was trained on, written in f16. The file sits in the model cache beside the
converted base, with its sha256 in ``NAME.sha256``; a file that fails it is written again.

>>> base_gguf_name("SmolLM2-135M-Instruct.Q4_1-0123456789abcdef")
'SmolLM2-135M-Instruct.Q4_1-0123456789abcdef.f16.gguf'
"""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path
from typing import Callable

from learner.config import ModelConfig
from learner.model.bases import _cache_dir_for, _say, cache_root, resolve_base
from learner.model.export import ExportError
from learner.store.storage import atomic_write_bytes, sha256_file

__all__ = ["base_gguf", "base_gguf_name"]


def base_gguf_name(key: str) -> str:
    """The cached file's name for a base known by ``key``."""
    return f"{key}.f16.gguf"


def _base_key(cfg: ModelConfig, root: Path) -> str:
    resolved = resolve_base(cfg.base)
    if resolved.kind == "byte":
        raise ExportError("the byte model has no GGUF form: serve it with the torch engine")
    if resolved.kind == "gguf":
        return _cache_dir_for(resolved.path, root)[0].name
    files = sorted(p for p in resolved.path.iterdir() if p.is_file())
    stamp = "\n".join(f"{p.name} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files)
    return f"{resolved.path.name[:60]}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"


def _trusted(path: Path) -> bool:
    seal = path.with_name(path.name + ".sha256")
    return path.is_file() and seal.is_file() and seal.read_text().strip() == sha256_file(path)


def base_gguf(cfg: ModelConfig, say: Callable[[str], None] = _say) -> Path:
    """The verified f16 GGUF of ``cfg.base`` (written the first time: the base is loaded with torch once)."""
    from learner.model.adapted import AdaptedModel
    from learner.model.export import export_gguf

    root = cache_root(cfg.cache_dir) / "gguf"
    root.mkdir(parents=True, exist_ok=True)
    path = root / base_gguf_name(_base_key(cfg, root.parent))
    if _trusted(path):
        return path
    with open(root / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be writing the same base
        if _trusted(path):
            return path
        say(f"writing the base {cfg.base} as an f16 GGUF for llama.cpp in {path} (once)")
        written = export_gguf(AdaptedModel(cfg), path, {"profile": "base", "base": cfg.base}, quant="f16")
        atomic_write_bytes(path.with_name(path.name + ".sha256"), (written[path.name] + "\n").encode())
    return path
