"""What every fault test checks after a fault: the state directory is whole and tells the truth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from learner.store.registry import ModelRegistry, version_name


def set_faults(path: Path, rules: dict) -> None:
    """Replace the failpoint rules a running worker reads (learner/failpoints.py)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rules))
    os.replace(tmp, path)


def check_state_dir(state: Path, profiles: list[str], published: dict[str, int],
                    last_versions: dict[str, int | None], after_crash: bool = False) -> dict[str, int | None]:
    """Registry loads, every kept version verifies, no partial version directory, the learner state
    parses and never counts more than was published, versions only move forward. Returns the
    current versions. ``after_crash``: temp files and ``.tmp-`` directories a crash cut short are
    allowed (nothing names them; the next writer removes them); anything else is not."""
    current = {}
    for profile in profiles:
        directory = state / profile
        if not (directory / "registry.json").exists():
            current[profile] = None
            continue
        registry = ModelRegistry.open(state, profile, "", writer=False)
        for version in registry.kept_versions():
            registry.verify(version)
        versions = directory / "versions"
        if versions.exists():
            partial = [p.name for p in versions.iterdir() if not p.name.startswith("v")
                       and not (after_crash and p.name.startswith(".tmp-"))]
            assert not partial, f"{profile}: partial version directories {partial}"
            named = {version_name(e["version"]) for e in registry.history if e.get("version") and not e.get("pruned")}
            unnamed = [p.name for p in versions.iterdir() if p.name.startswith("v") and p.name not in named]
            assert after_crash or not unnamed, f"{profile}: version directories no registry entry names: {unnamed}"
        if not after_crash:
            temps = [p.name for p in directory.glob(".*.tmp")]
            assert not temps, f"{profile}: temp files left behind: {temps}"
        state_file = directory / "learner_state.json"
        if state_file.exists():
            saved = json.loads(state_file.read_text())
            assert saved["events_seen"] <= published.get(profile, 0), \
                f"{profile}: counted {saved['events_seen']} > published {published.get(profile, 0)}"
        now = registry.current_version
        before = last_versions.get(profile)
        assert before is None or (now is not None and now >= before), \
            f"{profile}: current version went back from {before} to {now}"
        current[profile] = now
    return current


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def exited(pid: int) -> bool:
    """True once ``pid`` is gone, or exited and not yet reaped by its parent (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for :func:`exited`; whether it did."""
    deadline = time.monotonic() + timeout_s
    while not exited(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return exited(pid)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the worker and its run processes (a power cut)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
