"""Durable file writes and checksums: temp file, fsync, rename, fsync the directory.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write_json(d / "a.json", {"x": 1})
>>> read_json(d / "a.json")
{'x': 1}
>>> sha256_bytes(b"abc")[:16]
'ba7816bf8f01cfea'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from learner.failpoints import failpoint

__all__ = [
    "CorruptStateError",
    "atomic_write_bytes",
    "atomic_write_json",
    "fsync_dir",
    "give_default_mode",
    "read_json",
    "sha256_bytes",
    "sha256_file",
    "write_dir_atomically",
]


class CorruptStateError(RuntimeError):
    """A state or checkpoint file that is missing, unreadable or fails its checksum.

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "state.json"
    >>> _ = bad.write_text("{not json")
    >>> read_json(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    learner.store.storage.CorruptStateError: .../state.json: unreadable JSON (...)"""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask (read by setting it and setting it back; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_default_mode(path: Path) -> None:
    """Give ``path`` (and, for a directory, everything in it) the mode a plain ``open`` or ``mkdir``
    would have: 0666 / 0777 less the umask. Temp files and folders are created 0600 / 0700, so a
    file published by rename would otherwise stay unreadable to a server running as another user.

    >>> import tempfile, pathlib, stat
    >>> f = pathlib.Path(tempfile.mkstemp()[1])
    >>> give_default_mode(f)
    >>> stat.S_IMODE(f.stat().st_mode) == 0o666 & ~_umask()
    True
    """
    mask = _umask()
    path = Path(path)
    if path.is_dir():
        for child in path.rglob("*"):
            os.chmod(child, (0o777 if child.is_dir() else 0o666) & ~mask)
        os.chmod(path, 0o777 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        failpoint("storage.write", str(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any, compact: bool = False) -> None:
    """Write JSON atomically; ``compact`` (one line, no sorting) takes json's C encoder, several times
    faster for the big learner-state snapshots that are written every second."""
    if compact:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise CorruptStateError(f"{path}: unreadable JSON ({exc})") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_dir_atomically(final: Path, files: dict[str, bytes]) -> dict[str, str]:
    """Write ``files`` into a temp directory beside ``final``, fsync all, rename it into place.

    Returns the sha256 of each file. ``final`` must not exist yet.
    """
    final = Path(final)
    if final.exists():
        raise FileExistsError(f"{final} already exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        sums = {}
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            sums[name] = sha256_bytes(data)
        fsync_dir(tmp)
        failpoint("storage.dir", str(final))
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(final.parent)
    return sums
