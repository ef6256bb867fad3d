"""The body of a trainer process (:class:`streams.run_pool.RunPool` starts them): it loads a base model once
and computes the runs its worker sends, one at a time, answering over a pipe.

Requests are ``("run", profile, learner config dict, plan file path)`` and ``("quit",)``; answers are
``("ready", line)`` once warm, ``("progress", line)`` while a run computes, then ``("ok", result)`` or
``("error", text)``. A trainer whose worker is gone (killed) exits within a second, whatever it computes:
nothing it could finish would be read.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback

from learner.training.plan import Plan

__all__ = ["exit_with_parent", "serve_runs"]


def exit_with_parent(every_s: float = 1.0) -> threading.Thread:
    """Watch this process's parent from a daemon thread and end this process once the parent is gone (this
    process was handed to another parent): a run computing when its worker was killed stops at once, not at
    its next progress line, which may be a minute away (evaluation, the Fisher pass)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    watcher = threading.Thread(target=watch, name="memstream-parent-watch", daemon=True)
    watcher.start()
    return watcher


def _load_base(warm_config: dict) -> str:
    """Load the base model of ``warm_config`` (a learner config) into this process's trainer; say how it went."""
    from learner.config import LearnerConfig
    from learner.training.trainer import shared_trainer

    try:
        model = LearnerConfig.from_dict(warm_config).model
        shared_trainer(model)
        return f"{model.base} loaded"
    except Exception as exc:  # noqa: BLE001 - the first run meets it again and reports it as its failure
        return f"base model not loaded: {type(exc).__name__}: {next(iter(str(exc).splitlines()), '')}"


def serve_runs(conn, stop, state_root: str, threads: int, warm_config: dict | None = None) -> None:
    """Body of a trainer process: with ``warm_config``, load its base model and say ``("ready", line)``; then
    answer ``("run", profile, config, plan_path)`` requests until told to quit."""
    started = time.perf_counter()
    exit_with_parent()
    import torch

    torch.set_num_threads(threads)
    from learner.config import LearnerConfig
    from learner.store.registry import ModelRegistry
    from learner.training.trainer import shared_trainer

    if warm_config is not None:
        loaded = _load_base(warm_config)
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
