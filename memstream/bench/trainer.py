"""One consolidation computed in a worker's trainer process and in this process: what handing a run
to the trainer costs.

The plan is made once (a profile that has taken the events in), then computed in pairs with the same
torch threads: here, through the trainer ``memstream learn`` uses, and in a trainer process of the
worker's pool (:class:`streams.run_pool.RunPool`), warmed as a worker warms it at its start (torch
imported, the base loaded) before the first pair, which sends each version's bytes back over a pipe.
The order alternates from pair to pair, so that neither place always runs first (or on a machine
that has just warmed up), and the ratio is the median of the pairs' ratios: one pair on a shared
machine moves by as much as the target allows.
Loading the base (and the rehearsal targets) is each run's ``checkout_s``, paid once per trainer, not
per run; the ratio compares what follows it, the run itself (``duration_s``: every step, evaluation,
the Fisher and the exports), and the seconds from handing the plan over to holding the result are
reported beside it.
While the trainer computes, this process only waits on the pipe: its own CPU over that time is
reported too (busy polling would show there).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["TARGET_RATIO", "bench_trainer"]

TARGET_RATIO = 1.1
PROFILE = "bench"
PARTS = ("prepare_s", "evaluate_s", "steps_s", "fisher_s", "export_s")  # of duration_s


def _run_summary(result, wall_s: float) -> dict[str, Any]:
    metrics = result.metrics
    return {"status": result.status, "steps": result.steps, "duration_s": result.duration_s,
            "wall_s": round(wall_s, 3), "checkout_s": metrics.get("checkout_s", 0.0), **{part: metrics.get(part, 0.0) for part in PARTS},
            "loss_new_after": metrics.get("loss_new_after")}


def _planned(config, events: list[dict], state: Path):
    from learner.online import OnlineLearner

    learner = OnlineLearner.open(state, PROFILE, config, auto_consolidate=False)
    for event in events:
        learner.learn_one({**event, "profile": PROFILE})
    plan = learner.start_run("manual")
    if plan is None:
        raise RuntimeError("the events made no plan (too few kept by the quality gate?)")
    return learner, plan


def bench_trainer(config, events: list[dict], threads: int | None = None, pairs: int = 1,
                  say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Compute one plan made from ``events`` in process and in a trainer process, ``pairs`` times, the
    order alternating (in process first in the first pair); ``config`` is a
    :class:`learner.config.LearnerConfig`. Each place's figures are the medians over its runs, the ratio
    the median of the pairs' own (see the module's docstring)."""
    import torch

    from learner.training.trainer import shared_trainer
    from memstream.bench.idle import cpu_seconds
    from streams.run_pool import RunPool

    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    state = Path(tempfile.mkdtemp(prefix="memstream-trainer-bench-"))
    learner, plan = _planned(config, events, state)
    results: dict[str, Any] = {"events": len(events), "threads": threads, "mode": plan.mode, "pairs": pairs}
    pool = RunPool(str(state), max_parallel=1, threads=threads, log=say)
    pool.warm(config.to_dict())  # as a worker does at its start: no pair computes beside its imports
    if not pool.wait_warm(600):
        raise RuntimeError("the trainer process did not get ready in 600 s")

    def in_process() -> dict[str, Any]:
        started = time.monotonic()
        result = shared_trainer(config.model).run(plan, learner.registry, config, PROFILE, log=say)
        return _run_summary(result, time.monotonic() - started)

    def in_trainer() -> dict[str, Any]:
        own_cpu = cpu_seconds([os.getpid()])[os.getpid()]
        started = time.monotonic()
        pool.submit(PROFILE, plan, config.to_dict())
        finished = []
        while not finished:
            time.sleep(0.5)
            finished = pool.poll()
        wall = time.monotonic() - started
        waiting_cpu = cpu_seconds([os.getpid()])[os.getpid()] - own_cpu
        return {**_run_summary(finished[0].result, wall), "waiting_cpu_percent": round(100 * waiting_cpu / wall, 2)}

    places = {"in_process": in_process, "trainer_process": in_trainer}
    runs: dict[str, list[dict[str, Any]]] = {place: [] for place in places}
    try:
        for pair in range(pairs):
            order = list(places) if pair % 2 == 0 else list(reversed(places))
            for place in order:
                say(f"== pair {pair + 1} of {pairs}, {place.replace('_', ' ')}: {len(plan.new)} new events, "
                    f"{threads} threads")
                runs[place].append(places[place]())
    finally:
        pool.close()
        learner.cancel_run(plan)
        learner.close()
    results["pair_ratios"] = [round(outside["duration_s"] / inside["duration_s"], 4) if inside["duration_s"] > 0
                              else float("nan") for inside, outside in zip(runs["in_process"], runs["trainer_process"])]
    results["runs"] = runs
    results.update({place: _median_run(place_runs) for place, place_runs in runs.items()})
    results["waiting_cpu_percent"] = max(run["waiting_cpu_percent"] for run in runs["trainer_process"])
    results["ratio"] = statistics.median(results["pair_ratios"])
    results["target_ratio"] = TARGET_RATIO
    results["met"] = results["ratio"] <= TARGET_RATIO
    return results


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for a place's runs: the first's status and steps, the median of every figure.

    >>> _median_run([{"status": "accepted", "steps": 3, "steps_s": 9.0, "loss_new_after": None},
    ...              {"status": "accepted", "steps": 3, "steps_s": 7.0, "loss_new_after": None},
    ...              {"status": "accepted", "steps": 3, "steps_s": 8.0, "loss_new_after": None}])
    {'status': 'accepted', 'steps': 3, 'steps_s': 8.0, 'loss_new_after': None}
    """
    first = runs[0]
    return {key: statistics.median(run[key] for run in runs)
            if key not in ("status", "steps") and isinstance(value, (int, float)) else value
            for key, value in first.items()}


def summary_rows(results: dict[str, Any]) -> list[list[Any]]:
    """Rows of the report: each part of the run in both places.

    >>> run = {"status": "accepted", "steps": 3, "duration_s": 8.0, "wall_s": 12.0, "checkout_s": 2.0,
    ...        "prepare_s": 0.0, "evaluate_s": 1.0, "steps_s": 6.0, "fisher_s": 1.0, "export_s": 0.0}
    >>> rows = summary_rows({"in_process": run, "trainer_process": {**run, "wall_s": 15.0},
    ...                      "ratio": 1.0, "waiting_cpu_percent": 0.4})
    >>> rows[0], rows[3]
    (['status, steps', 'accepted, 3', 'accepted, 3'], ['the run once checked out (s)', 8.0, 8.0])
    """
    inside, outside = results["in_process"], results["trainer_process"]
    rows = [["status, steps", f"{inside['status']}, {inside['steps']}", f"{outside['status']}, {outside['steps']}"],
            ["from handing over to the result (s)", inside["wall_s"], outside["wall_s"]],
            ["checkout: the base and its rehearsal targets (s)", inside["checkout_s"], outside["checkout_s"]],
            ["the run once checked out (s)", inside["duration_s"], outside["duration_s"]]]
    rows += [[f"  {part}", inside[part], outside[part]] for part in PARTS]
    rows.append(["this process's CPU while the trainer computed (% of a core)", "", results["waiting_cpu_percent"]])
    return rows
