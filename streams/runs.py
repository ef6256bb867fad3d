"""Consolidations off the ingest path: each run computes in its own process.

The worker process stays the one writer of every profile it owns: a run process reads the
parent version from disk, trains, and sends back the verdict and the bytes of the new weight
files; the worker commits them. A run process that is killed (or whose worker is killed)
therefore leaves nothing behind on disk.

The plan goes to the run process as a JSON file (so starting a run never blocks the worker on
a pipe while the new process imports torch); the verdict and weight bytes come back over a
multiprocessing pipe from the worker's own child. Nothing read from the network is unpickled.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from learner.consolidation import Plan

__all__ = ["RunPool", "FinishedRun"]


def _run_process(conn, state_root: str, profile: str, config_dict: dict[str, Any], plan_path: str,
                 threads: int) -> None:
    """Body of a run process: compute the run, send ``("ok", outcome)`` or ``("error", text)``."""
    try:
        import torch

        torch.set_num_threads(threads)
        from learner.online import compute_run_for_profile

        with open(plan_path, encoding="utf-8") as fh:
            plan = Plan.from_dict(json.load(fh))
        os.unlink(plan_path)
        conn.send(("ok", compute_run_for_profile(state_root, profile, config_dict, plan)))
    except BaseException as exc:  # noqa: BLE001 - report everything to the worker, then exit
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"))
    finally:
        conn.close()


@dataclass
class FinishedRun:
    profile: str
    plan: Plan
    ok: bool
    outcome: dict[str, Any] | None
    error: str | None
    seconds: float


@dataclass
class _Running:
    plan: Plan
    process: Any
    conn: Any
    started: float = field(default_factory=time.monotonic)


class RunPool:
    """At most ``max_parallel`` run processes, at most one per profile.

    Parameters
    ----------
    state_root
        The state directory the run processes read from.
    max_parallel
        Runs computing at once.
    threads
        Torch threads per run process.
    """

    def __init__(self, state_root: str, max_parallel: int = 1, threads: int = 1):
        self.state_root = str(state_root)
        self.max_parallel = max_parallel
        self.threads = threads
        self.running: dict[str, _Running] = {}
        self._ctx = multiprocessing.get_context("spawn")  # no fork of an event loop or torch threads

    def busy(self, profile: str) -> bool:
        return profile in self.running

    @property
    def full(self) -> bool:
        return len(self.running) >= self.max_parallel

    def submit(self, profile: str, plan: Plan, config_dict: dict[str, Any]) -> None:
        if self.busy(profile):
            raise RuntimeError(f"a run of {profile!r} is already computing")
        runs_dir = os.path.join(self.state_root, "_runs")
        os.makedirs(runs_dir, exist_ok=True)
        fd, plan_path = tempfile.mkstemp(prefix=f"{profile}-{plan.run_id}-", suffix=".json", dir=runs_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(plan.to_dict(), fh)
        parent_conn, child_conn = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(target=_run_process, name=f"memstream-run-{profile}", daemon=True,
                                    args=(child_conn, self.state_root, profile, config_dict, plan_path,
                                          self.threads))
        process.start()
        child_conn.close()
        self.running[profile] = _Running(plan, process, parent_conn)

    def poll(self) -> list[FinishedRun]:
        """The runs that finished since the last call (a dead process counts as an error)."""
        done = []
        for profile, run in list(self.running.items()):
            message = None
            if run.conn.poll():
                try:
                    message = run.conn.recv()
                except (EOFError, OSError):
                    message = ("error", f"run process exited with code {run.process.exitcode}")
            elif not run.process.is_alive():
                message = ("error", f"run process exited with code {run.process.exitcode} before it answered")
            if message is None:
                continue
            run.process.join(timeout=5)
            run.conn.close()
            del self.running[profile]
            status, payload = message
            seconds = time.monotonic() - run.started
            done.append(FinishedRun(profile, run.plan, status == "ok", payload if status == "ok" else None,
                                    payload if status != "ok" else None, seconds))
        return done

    def cancel(self, profile: str) -> Plan | None:
        """Stop the run of ``profile`` (its process is killed; it wrote nothing); returns its plan."""
        run = self.running.pop(profile, None)
        if run is None:
            return None
        run.process.kill()
        run.process.join(timeout=5)
        run.conn.close()
        return run.plan

    def cancel_all(self) -> dict[str, Plan]:
        return {profile: plan for profile in list(self.running) if (plan := self.cancel(profile)) is not None}
