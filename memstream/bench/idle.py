"""What an idle ``memstream up`` costs: CPU of the broker and the worker over a minute with no events.

The processes are the command's whole tree (the embedded broker, the worker, any trainer), read
from ``/proc`` before and after the window: user + system time over wall time, in percent of one
core. The target is 3% at most.

>>> import os
>>> os.getpid() in process_tree(os.getpid())
True
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["IDLE_TARGET_PERCENT", "bench_idle", "cpu_seconds", "process_tree", "resident_mib", "wait_ready"]

IDLE_TARGET_PERCENT = 3.0
READY_LINES = ("rebalance: given partitions", "trainer ready in")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # the fields after the command name (which may hold spaces)


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, i = [root], 0
    while i < len(tree):
        tree += sorted(children.get(tree[i], []))
        i += 1
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process that still exists."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / hz
    return out


def resident_mib(root: int) -> float:
    """Resident memory of the process tree of ``root``, in MiB (processes that ended count 0).

    >>> resident_mib(os.getpid()) > 1
    True
    """
    kib = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kib += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return round(kib / 1024, 1)


def _name(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    return " ".join(w.decode(errors="replace") for w in words if w)[:100]


def measure(roots: int | list[int], seconds: float) -> dict[str, Any]:
    """CPU of the process tree of ``roots`` (one pid or several) over ``seconds``, per process and in all,
    in percent of one core."""
    pids = [pid for root in ([roots] if isinstance(roots, int) else roots) for pid in process_tree(root)]
    before = cpu_seconds(pids)
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    after = cpu_seconds(pids)
    processes = [{"pid": pid, "command": _name(pid), "cpu_percent": round(100 * (after[pid] - before[pid]) / wall, 2)}
                 for pid in pids if pid in before and pid in after]
    total = round(sum(p["cpu_percent"] for p in processes), 2)
    return {"seconds": round(wall, 1), "processes": processes, "cpu_percent": total}


def wait_ready(process: subprocess.Popen, log_path: Path, timeout_s: float, what: str) -> None:
    """Return once the worker logging to ``log_path`` holds its partitions and its trainer is warm (both
    ``READY_LINES``); raise :class:`RuntimeError` when ``process`` ended or ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while not all(line in log_path.read_text(errors="replace") for line in READY_LINES):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (see {log_path})")
        time.sleep(0.5)


def bench_idle(seconds: float = 60.0, settle_s: float = 5.0, ready_timeout_s: float = 180.0) -> dict[str, Any]:
    """Start ``memstream up`` (embedded broker, topics, one worker) on a free port in a temporary state
    directory, wait until its worker holds its partitions, let it settle, then measure it idle."""
    from streams.broker import free_port

    work = Path(tempfile.mkdtemp(prefix="memstream-idle-"))
    log_path = work / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "memstream", "up", "--state", str(work / "state"),
                               "--port", str(free_port())], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        wait_ready(up, log_path, ready_timeout_s, "memstream up")
        time.sleep(settle_s)
        result = measure(up.pid, seconds)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
    result.update(target_percent=IDLE_TARGET_PERCENT, met=result["cpu_percent"] <= IDLE_TARGET_PERCENT)
    return result
