"""Export a version as a plain Hugging Face model directory (LoRA merged into the base)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from learner.adapted import AdaptedModel
from learner.storage import fsync_dir, sha256_file

__all__ = ["export_merged"]


def export_merged(live: AdaptedModel, out: str | Path, lineage: dict[str, Any]) -> dict[str, str]:
    """Write ``model.safetensors``, ``config.json``, the tokenizer and ``memstream_export.json``.

    The directory appears whole or not at all (written beside ``out``, then renamed).
    Returns the sha256 of each file written.
    """
    out = Path(out)
    occupied = out.is_file() or (out.is_dir() and any(out.iterdir()))
    if occupied:
        raise FileExistsError(f"export target {str(out)!r} already exists and is not empty")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        merged = live.merged()
        merged.save_pretrained(tmp, safe_serialization=True)
        live.tokenizer.to_hf().save_pretrained(tmp)
        (tmp / "memstream_export.json").write_text(json.dumps(lineage, indent=2, sort_keys=True, default=str))
        for file in tmp.iterdir():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {f.name: sha256_file(f) for f in sorted(out.iterdir())}
