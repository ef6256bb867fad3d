"""One writer per profile: an advisory lock file held while a process may write a profile's state.

Readers (``registry list``, ``generate``, ``export``) take no lock and never delete anything.
Within one process the lock is re-entrant, so a notebook can open the same profile twice.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with ProfileLock(d):
...     with ProfileLock(d):  # same process: fine
...         (d / ".writer.lock").exists()
True
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

__all__ = ["ProfileLock", "ProfileLocked"]

LOCK_FILE = ".writer.lock"
_held: dict[str, tuple[int, int]] = {}  # path -> (fd, holders) for this process
_guard = threading.Lock()


class ProfileLocked(RuntimeError):
    """Another process is writing this profile."""


class ProfileLock:
    """Hold the writer lock of a profile directory (``with`` or ``acquire``/``release``)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.path = str(Path(directory) / LOCK_FILE)
        self.held = False

    def acquire(self) -> "ProfileLock":
        if self.held:
            return self
        with _guard:
            fd, holders = _held.get(self.path, (None, 0))
            if fd is None:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    os.close(fd)
                    raise ProfileLocked(
                        f"{Path(self.path).parent.name!r} is being written by another process (pid {owner})"
                    ) from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
            _held[self.path] = (fd, holders + 1)
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        with _guard:
            fd, holders = _held[self.path]
            if holders == 1:
                del _held[self.path]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            else:
                _held[self.path] = (fd, holders - 1)
        self.held = False

    def __enter__(self) -> "ProfileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
