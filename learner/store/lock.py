"""One writer per profile: an advisory lock file held while a process may write a profile's state.

Readers (``registry list``, ``generate``, ``export``) take no lock and never delete anything.
Within one process the lock is re-entrant, so a notebook can open the same profile twice.

Every hold is a *lease* with an id of its own, written down in the profile's ``writers.jsonl``
when it is taken and when it is given back (a process killed gives nothing back: the next lease
names the pid it took over from). The registry records the lease that committed each version, so
who wrote what, and that no two wrote at once, can be checked afterwards.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with ProfileLock(d):
...     with ProfileLock(d):  # same process: fine
...         (d / ".writer.lock").exists()
True
>>> [sorted(e) for e in read_leases(d)][:2]
[['acquired', 'host', 'lease', 'pid', 'previous_pid'], ['lease', 'released']]
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

__all__ = ["ProfileLock", "ProfileLocked", "lease_of", "read_leases", "LEASES_FILE"]

LOCK_FILE = ".writer.lock"
LEASES_FILE = "writers.jsonl"
LEASES_KEPT = 2000  # lines kept when the journal is trimmed
_held: dict[str, tuple[int, int, str]] = {}  # path -> (fd, holders, lease id) for this process
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
            fd, holders, lease = _held.get(self.path, (None, 0, ""))
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
                os.ftruncate(fd, 0)  # the pid is for the message of a process refused
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                lease = uuid.uuid4().hex[:16]
                _journal(self.path, {"lease": lease, "pid": os.getpid(), "host": socket.gethostname(),
                                     "acquired": time.time(), "previous_pid": _last_holder(self.path)})
            _held[self.path] = (fd, holders + 1, lease)
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        with _guard:
            fd, holders, lease = _held[self.path]
            if holders == 1:
                del _held[self.path]
                _journal(self.path, {"lease": lease, "released": time.time()})
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            else:
                _held[self.path] = (fd, holders - 1, lease)
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


def lease_of(directory: str | os.PathLike[str]) -> str | None:
    """The id of the lease this process holds on a profile directory (None when it holds none)."""
    held = _held.get(str(Path(directory) / LOCK_FILE))
    return held[2] if held else None


def read_leases(directory: str | os.PathLike[str]) -> list[dict]:
    """The journal of a profile's writer leases, oldest first (a torn last line is left out)."""
    try:
        lines = (Path(directory) / LEASES_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return _entries(lines)


def _entries(lines: list) -> list[dict]:
    """The journal lines that parse (a torn line, or one a tail cut, is left out)."""
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _last_holder(lock_path: str) -> int | None:
    """The pid of the last lease in the journal beside the lock (None: none yet). Read from the journal, not
    the lock file, so that a process killed after it took the lock but before it wrote its lease down is
    not named: the next lease takes over from the last one written.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _last_holder(str(d / LOCK_FILE))
    >>> with ProfileLock(d):
    ...     pass
    >>> _last_holder(str(d / LOCK_FILE)) == os.getpid()
    True
    """
    try:
        with open(Path(lock_path).with_name(LEASES_FILE), "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))  # the last lines: dozens of leases
            tail = fh.read()
    except OSError:
        return None
    for entry in reversed(_entries(tail.splitlines())):
        if "acquired" in entry:
            return entry.get("pid")
    return None


def _journal(lock_path: str, entry: dict) -> None:
    """Append one line to the lease journal beside the lock (written only while the lock is held)."""
    path = Path(lock_path).with_name(LEASES_FILE)
    try:
        if path.exists() and path.stat().st_size > 200 * LEASES_KEPT:
            from learner.store.storage import atomic_write_bytes

            kept = path.read_bytes().splitlines(keepends=True)[-LEASES_KEPT // 2:]
            atomic_write_bytes(path, b"".join(kept))
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        pass  # the journal is evidence, not state: a full disk must not stop the writer
