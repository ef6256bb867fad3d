"""Failpoints: named places where the fault suite can crash the process or make an OS call fail.

Off (one dictionary lookup per call) unless the environment variable ``MEMSTREAM_FAULTS``
names a JSON file of rules; the file is re-read whenever it changes, so a test can switch
faults on and off while a worker runs (spawned run processes inherit the variable)::

    {"registry.commit": {"action": "crash", "after": 1},
     "storage.write": {"action": "oserror", "errno": "ENOSPC", "match": "registry.json"},
     "train.step": {"action": "nan"}}

Actions
    ``crash``    SIGKILL this process at the failpoint (a power cut, as far as the files know).
    ``oserror``  raise ``OSError(errno, strerror)`` (``ENOSPC``: disk full; ``EROFS``: read-only).
    ``delay``    sleep ``seconds`` there, then go on (a slow disk).
    anything else is returned to the caller, which decides (``nan``: the training loss becomes NaN).

``after`` skips that many hits first; ``match`` only fires when the failpoint's detail (a
path, a profile) contains it. Failpoints in the code:

    storage.write   atomic_write_bytes, temp file written, before the rename
    storage.dir     write_dir_atomically, directory written, before the rename
    registry.commit version directory in place, before registry.json names it
    state.saved     learner state written, before the offsets it covers are acked (worker)
    train.step      each optimizer step of a consolidation (in the run process)

>>> failpoint("registry.commit") is None   # no MEMSTREAM_FAULTS: nothing happens
True
"""

from __future__ import annotations

import errno as errno_codes
import json
import os
import signal
import time
from pathlib import Path

__all__ = ["failpoint", "ENV"]

ENV = "MEMSTREAM_FAULTS"
_rules: dict = {}
_mtime: float | None = None
_hits: dict[str, int] = {}


def _load(path: str) -> dict:
    global _rules, _mtime
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        _rules, _mtime = {}, None
        return _rules
    if mtime != _mtime:
        try:
            _rules = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            _rules = {}
        _mtime = mtime
        _hits.clear()  # new rules count their hits afresh
    return _rules


def failpoint(name: str, detail: str = "") -> str | None:
    """Act on the rule for ``name`` when one is set (see the module docstring); else return None."""
    path = os.environ.get(ENV)
    if not path:
        return None
    rule = _load(path).get(name)
    if not rule or (rule.get("match") and rule["match"] not in detail):
        return None
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] <= int(rule.get("after", 0)):
        return None
    action = rule.get("action")
    if action == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "oserror":
        code = getattr(errno_codes, str(rule.get("errno", "EIO")), errno_codes.EIO)
        raise OSError(code, os.strerror(code), detail or name)
    if action == "delay":
        time.sleep(float(rule.get("seconds", 1.0)))
    return action
