"""Consolidations off the ingest path: trainer processes that load the base model once.

A worker keeps up to ``worker.max_parallel_runs`` trainer processes (one per device on a GPU machine), started
with the worker (:meth:`RunPool.warm`, ``worker.warm_trainers``): each imports torch and loads the base while
the worker joins its group. A trainer keeps its base; every run, of any profile, checks out its parent
version's adapter in place (:mod:`learner.training.trainer`). The worker stays the one writer of its profiles:
a trainer reads the parent from disk and sends back the verdict and the new version's bytes, which the worker
commits, so a killed trainer leaves nothing on disk. The plan goes over as a JSON file (handing over a run
never blocks the worker on a pipe); answers come back over a pipe from the worker's own child, so nothing read
from the network is unpickled. A run stops at a flag checked at every step; a dead trainer is replaced at the
next run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from learner.training.plan import Plan, RunResult
from streams.trainer_process import serve_runs

__all__ = ["InProcessRuns", "RunPool", "FinishedRun", "threads_per_run"]


def threads_per_run(max_parallel: int, environ=os.environ, usable_cores: int | None = None) -> int:
    """Torch threads for each of ``max_parallel`` trainers: ``OMP_NUM_THREADS``, else the cores this
    process may run on (its CPU affinity, not the machine's count), shared out.

    More threads than cores make each step wait on preempted threads, so a run slows many times over.

    >>> threads_per_run(1, environ={}, usable_cores=8), threads_per_run(3, environ={}, usable_cores=8)
    (8, 2)
    >>> threads_per_run(2, environ={"OMP_NUM_THREADS": "6"}, usable_cores=2), threads_per_run(4, {}, 2)
    (3, 1)
    """
    cores = int(environ.get("OMP_NUM_THREADS", "0") or 0) or usable_cores or len(os.sched_getaffinity(0))
    return max(1, cores // max_parallel)


@dataclass
class FinishedRun:
    profile: str
    plan: Plan
    result: RunResult
    seconds: float


@dataclass
class _Trainer:
    process: Any
    conn: Any
    stop: Any
    profile: str | None = None  # the run it computes now
    plan: Plan | None = None
    started: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    warming: bool = False  # started with a base to load, and not yet ready


class RunPool:
    """Up to ``max_parallel`` resident trainer processes, at most one run per profile.

    Parameters
    ----------
    state_root
        The state directory the trainers read parent versions from.
    max_parallel
        Runs computing at once (trainer processes).
    threads
        Torch threads per trainer.
    """

    def __init__(self, state_root: str, max_parallel: int = 1, threads: int = 1,
                 log: Callable[[str], None] = lambda _line: None):
        self.state_root = str(state_root)
        self.log = log  # where the trainers' progress lines go
        self.max_parallel = max_parallel
        self.threads = threads
        self._ctx = multiprocessing.get_context("spawn")  # no fork of an event loop or torch threads
        self._trainers: list[_Trainer] = []

    @property
    def running(self) -> dict[str, Plan]:
        return {t.profile: t.plan for t in self._trainers if t.profile is not None and not t.cancelled}

    def busy(self, profile: str) -> bool:
        return profile in self.running

    @property
    def full(self) -> bool:
        return all(t.profile is not None for t in self._trainers) and len(self._trainers) >= self.max_parallel

    def warm(self, config_dict: dict[str, Any]) -> None:
        """Start every trainer now, each loading the base model of ``config_dict`` (a learner config) while
        nothing is due yet; :meth:`poll` logs the line each says when ready."""
        while len(self._trainers) < self.max_parallel:
            self._start_trainer(config_dict)

    def wait_warm(self, timeout_s: float) -> bool:
        """Wait until every trainer :meth:`warm` started is ready (or has died): False if ``timeout_s`` ran out.
        Their ready lines go to the log; call it before any :meth:`submit`."""
        deadline = time.monotonic() + timeout_s
        while waiting := [t for t in self._trainers if t.warming and t.process.is_alive()]:
            if time.monotonic() > deadline:
                return False
            if waiting[0].conn.poll(0.2):
                self._answer(waiting[0])
        return True

    def _start_trainer(self, warm_config: dict[str, Any] | None = None) -> _Trainer:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        stop = self._ctx.Event()
        process = self._ctx.Process(target=serve_runs, name="memstream-trainer", daemon=True,
                                    args=(child_conn, stop, self.state_root, self.threads, warm_config))
        process.start()
        child_conn.close()
        trainer = _Trainer(process, parent_conn, stop, warming=warm_config is not None)
        self._trainers.append(trainer)
        return trainer

    def _idle_trainer(self) -> _Trainer:
        for trainer in self._trainers:
            if trainer.profile is None and trainer.process.is_alive():
                return trainer
        self._trainers = [t for t in self._trainers if t.process.is_alive() or t.profile is not None]
        if len(self._trainers) >= self.max_parallel:
            raise RuntimeError("every trainer is busy")
        return self._start_trainer()

    def submit(self, profile: str, plan: Plan, config_dict: dict[str, Any]) -> None:
        if self.busy(profile):
            raise RuntimeError(f"a run of {profile!r} is already computing")
        trainer = self._idle_trainer()
        runs_dir = os.path.join(self.state_root, "_runs")
        os.makedirs(runs_dir, exist_ok=True)
        fd, plan_path = tempfile.mkstemp(prefix=f"{profile}-{plan.run_id}-", suffix=".json", dir=runs_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(plan.to_dict(), fh)
        trainer.stop.clear()
        trainer.conn.send(("run", profile, config_dict, plan_path))
        trainer.profile, trainer.plan, trainer.started, trainer.cancelled = profile, plan, time.monotonic(), False

    def poll(self) -> list[FinishedRun]:
        """The runs that finished since the last call (a trainer that died counts as a failed run)."""
        done = []
        for trainer in list(self._trainers):
            message = self._answer(trainer)
            if trainer.profile is None:  # idle: it has nothing to answer
                if not trainer.process.is_alive():
                    self._drop(trainer)
                continue
            if message is None and not trainer.process.is_alive() and not trainer.conn.poll():
                message = ("error", f"trainer process exited with code {trainer.process.exitcode} before it answered")
            if message is None:
                continue
            profile, plan, cancelled = trainer.profile, trainer.plan, trainer.cancelled
            seconds = time.monotonic() - trainer.started
            trainer.profile = trainer.plan = None
            if not trainer.process.is_alive():
                self._drop(trainer)
            if cancelled:
                continue  # its worker forgot it already
            status, payload = message
            if status == "ok":
                result = RunResult.from_wire(payload)
            else:
                first = str(payload).splitlines()[0]
                result = RunResult.for_plan(plan, profile, "failed", f"trainer failed: {first}")
            done.append(FinishedRun(profile, plan, result, seconds))
        return done

    def _answer(self, trainer: _Trainer) -> tuple | None:
        """Read what ``trainer`` said: its lines (ready, progress) are logged; its answer to a run is returned."""
        while trainer.conn.poll():
            try:
                message = trainer.conn.recv()
            except (EOFError, OSError):
                trainer.warming = False
                return ("error", f"trainer process exited with code {trainer.process.exitcode}")
            if message[0] == "ready":
                trainer.warming = False
                self.log(message[1])
            elif message[0] == "progress":
                if not trainer.cancelled:
                    self.log(message[1])
            else:
                return message
        return None

    def cancel(self, profile: str) -> Plan | None:
        """Stop the run of ``profile`` (the trainer drops it at its next step; it wrote nothing); returns
        its plan."""
        for trainer in self._trainers:
            if trainer.profile == profile and not trainer.cancelled:
                trainer.stop.set()
                trainer.cancelled = True
                return trainer.plan
        return None

    def cancel_all(self) -> dict[str, Plan]:
        return {profile: plan for profile in list(self.running) if (plan := self.cancel(profile)) is not None}

    def _drop(self, trainer: _Trainer) -> None:
        try:
            trainer.conn.close()
        except OSError:
            pass
        if trainer in self._trainers:
            self._trainers.remove(trainer)

    def close(self, timeout: float = 5.0) -> None:
        """Stop every trainer: an idle one is told to quit (within ``timeout``); one computing a run or still
        loading its base is killed at once, as it has written nothing (its run is dropped, and queued again
        by the worker that comes next)."""
        for trainer in self._trainers:
            trainer.stop.set()
            if trainer.profile is not None or trainer.warming:
                trainer.process.kill()
                continue
            try:
                trainer.conn.send(("quit",))
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + timeout
        for trainer in list(self._trainers):
            trainer.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if trainer.process.is_alive():
                trainer.process.kill()
                trainer.process.join(timeout=5)
            self._drop(trainer)


class InProcessRuns:
    """The run pool's interface over this process: a run computes at :meth:`submit`, on the learner's own
    trainer, and :meth:`poll` hands it back (tests and tiny setups, where a trainer process costs more
    than it saves).

    Parameters
    ----------
    learner_of
        The open learner of a profile (the worker's): its trainer, registry and config run the plan.
    log
        Where the run's progress lines go.
    """

    def __init__(self, learner_of: Callable[[str], Any], log: Callable[[str], None] = lambda _line: None):
        self.learner_of = learner_of
        self.log = log
        self._finished: list[FinishedRun] = []

    running: dict[str, Plan] = {}  # nothing computes between calls
    full = False

    def busy(self, profile: str) -> bool:
        return False

    def submit(self, profile: str, plan: Plan, config_dict: dict[str, Any]) -> None:  # noqa: ARG002 - the pool's signature
        learner = self.learner_of(profile)
        started = time.monotonic()
        result = learner.trainer.run(plan, learner.registry, learner.config, profile, log=self.log)
        self._finished.append(FinishedRun(profile, plan, result, time.monotonic() - started))

    def poll(self) -> list[FinishedRun]:
        done, self._finished = self._finished, []
        return done

    def cancel(self, profile: str) -> Plan | None:  # noqa: ARG002 - a run here is over before anyone can cancel it
        return None

    def close(self) -> None:
        self._finished = []
