"""Consolidations off the ingest path: trainer processes that load the base model once.

A worker keeps up to ``worker.max_parallel_runs`` trainer processes (one per device on a GPU
machine), started with the worker (:meth:`RunPool.warm`, ``worker.warm_trainers``): each imports torch
and loads the base model while the worker joins its group, so the first run that comes due starts at once. A trainer
keeps its base: every run — of any profile — checks out the parent version's adapter in place and trains it (see
:mod:`learner.training.trainer`), so no run pays for loading the base again. The worker process stays the
one writer of every profile it owns: a trainer reads the parent version from disk, trains, and
sends back the verdict and the bytes of the new version's files; the worker commits them. A
trainer that is killed therefore leaves nothing behind on disk.

The plan goes to the trainer as a JSON file (so handing over a run never blocks the worker on a
pipe while the trainer imports torch); the verdict and the weight bytes come back over a pipe
from the worker's own child. A run is stopped by a flag the trainer checks at every step; a
trainer that dies is replaced on the next run. Nothing read from the network is unpickled.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from learner.training.plan import Plan, RunResult

__all__ = ["InProcessRuns", "RunPool", "FinishedRun"]


def _trainer_process(conn, stop, state_root: str, threads: int, warm_config: dict | None = None) -> None:
    """Body of a trainer process: with ``warm_config``, load its base model and say ``("ready", line)``; then
    answer ``("run", profile, config, plan_path)`` requests until told to quit."""
    started = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    from learner.config import LearnerConfig
    from learner.store.registry import ModelRegistry
    from learner.training.trainer import shared_trainer

    if warm_config is not None:
        try:
            model = LearnerConfig.from_dict(warm_config).model
            shared_trainer(model)
            loaded = f"{model.base} loaded"
        except Exception as exc:  # noqa: BLE001 - the first run meets it again and reports it as its failure
            loaded = f"base model not loaded: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        try:
            conn.send(("ready", f"trainer ready in {time.perf_counter() - started:.1f} s ({loaded})"))
        except (BrokenPipeError, OSError):
            return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        if request[0] == "quit":
            return
        _, profile, config_dict, plan_path = request
        try:
            with open(plan_path, encoding="utf-8") as fh:
                plan = Plan.from_dict(json.load(fh))
            os.unlink(plan_path)
            config = LearnerConfig.from_dict(config_dict)
            registry_file = os.path.join(state_root, profile, "registry.json")
            registry = ModelRegistry.open(state_root, profile, "", writer=False) \
                if os.path.exists(registry_file) else None
            trainer = shared_trainer(config.model)
            result = trainer.run(plan, registry, config, profile, should_stop=stop.is_set,
                                 log=lambda line: conn.send(("progress", line)))
            reply = ("ok", result.to_wire())
        except BaseException as exc:  # noqa: BLE001 - report everything to the worker, then go on
            reply = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


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

    def _start_trainer(self, warm_config: dict[str, Any] | None = None) -> _Trainer:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        stop = self._ctx.Event()
        process = self._ctx.Process(target=_trainer_process, name="memstream-trainer", daemon=True,
                                    args=(child_conn, stop, self.state_root, self.threads, warm_config))
        process.start()
        child_conn.close()
        trainer = _Trainer(process, parent_conn, stop)
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
                return ("error", f"trainer process exited with code {trainer.process.exitcode}")
            if message[0] == "ready" or (message[0] == "progress" and not trainer.cancelled):
                self.log(message[1])
            elif message[0] != "progress":
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
        """Stop every trainer (runs in progress are dropped: they wrote nothing)."""
        for trainer in self._trainers:
            trainer.stop.set()
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
