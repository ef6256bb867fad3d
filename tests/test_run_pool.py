"""The worker's trainer processes: started with the worker, warm (torch imported, base model loaded) before
any run is due."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from learner.config import load_config
from streams.run_pool import RunPool
from tests.conftest import TINY
from tests.faults.helpers import exited, wait_exited


def _ready_line(pool: RunPool, lines: list[str]) -> str:
    assert pool.wait_warm(180), f"no trainer ready within 180 s: {lines}"
    ready = [line for line in lines if line.startswith("trainer ready in ")]
    assert len(ready) == 1, lines
    return ready[0]


def test_a_warmed_trainer_loads_its_base_before_any_run_and_says_so(tmp_path):
    lines: list[str] = []
    pool = RunPool(str(tmp_path), max_parallel=1, threads=1, log=lines.append)
    try:
        pool.warm(load_config(overrides=TINY, environ={}).to_dict())
        assert not pool.full and pool.running == {}  # warm, not busy: a run may start at once
        ready = _ready_line(pool, lines)
        assert ready.endswith("(memstream-byte loaded)"), ready
        assert pool.poll() == [] and pool.wait_warm(0)  # nothing was submitted, nothing finishes; still ready
        pool.warm(load_config(overrides=TINY, environ={}).to_dict())  # already warm: no second trainer
        assert len(pool._trainers) == 1
        trainer = pool._trainers[0].process
    finally:
        pool.close(timeout=300)
    assert trainer.exitcode == 0  # idle: told to quit, and it did


def test_closing_the_pool_kills_a_trainer_still_loading_its_base_at_once(tmp_path):
    pool = RunPool(str(tmp_path), max_parallel=1, threads=1)
    pool.warm(load_config(overrides=TINY, environ={}).to_dict())
    trainer = pool._trainers[0].process
    pool.close(timeout=300)  # told to quit instead, it would quit once its imports and base load were done
    assert trainer.exitcode == -signal.SIGKILL


def test_a_trainer_whose_base_cannot_load_says_why_and_stays_up(tmp_path):
    lines: list[str] = []
    config = load_config(overrides=TINY, environ={}).to_dict()
    config["model"]["base"] = str(tmp_path / "no-such-model")
    pool = RunPool(str(tmp_path), max_parallel=1, threads=1, log=lines.append)
    try:
        pool.warm(config)
        ready = _ready_line(pool, lines)
        assert "base model not loaded" in ready and "no-such-model" in ready, ready
        assert pool._trainers[0].process.is_alive()  # the first run meets the error and reports it
    finally:
        pool.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_a_process_busy_computing_exits_once_its_parent_is_killed():
    busy = ("from streams.trainer_process import exit_with_parent; exit_with_parent(every_s=0.1); "
            "print('watching', flush=True); "
            "import time; time.sleep(600)")  # a trainer inside a long computation: no pipe to notice anything on
    parent_code = ("import subprocess, sys, time; "
                   f"child = subprocess.Popen([sys.executable, '-c', {busy!r}]); print(child.pid, flush=True); "
                   "time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline() == "watching\n"  # the child shares the pipe: its watcher runs
        time.sleep(0.5)
        assert not exited(child)
        parent.kill()
        parent.wait()
        assert wait_exited(child, 60), "the child went on computing after its parent was killed"
    finally:
        if not exited(child):
            os.kill(child, signal.SIGKILL)


def _threads_per_run_pinned(cores: str) -> list[str]:
    """What ``threads_per_run(1)`` and ``threads_per_run(2)`` say in a fresh process pinned to ``cores``."""
    script = (f"import os; os.environ.pop('OMP_NUM_THREADS', None); os.sched_setaffinity(0, {cores});"
              "from streams.run_pool import threads_per_run; print(threads_per_run(1), threads_per_run(2))")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()


def test_a_trainer_gets_no_more_threads_than_the_cores_the_process_may_run_on():
    usable = sorted(os.sched_getaffinity(0))
    assert _threads_per_run_pinned(f"{{{usable[0]}}}") == ["1", "1"]
    assert _threads_per_run_pinned(str(set(usable))) == [str(len(usable)), str(max(1, len(usable) // 2))]
