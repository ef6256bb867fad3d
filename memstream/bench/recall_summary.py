"""The recall benchmark's summary over seeds, and its targets: a phase recalled right after it (≥ 90%),
phase 1 kept to the end (≥ 90%), final recall at least a retrain's (``joint``), general-text loss within +3%.
The graded recall (:mod:`memstream.bench.recall_choice`) is summarised beside it, without targets."""

from __future__ import annotations

import math
import statistics

__all__ = ["acceptance", "summary"]


def summary(runs: list, base_general: float) -> dict:
    """Mean and spread over seeds of one strategy's runs (``SeedRun``s) of the recall protocol."""
    T = len(runs[0].R)

    def stat(values):
        values = list(values)
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    right_after = stat(statistics.fmean(run.R[i][i] for i in range(T)) for run in runs)
    first_kept = stat(run.R[-1][0] for run in runs)
    final = stat(statistics.fmean(run.R[-1]) for run in runs)
    forgetting = stat(statistics.fmean(max(run.R[i][j] for i in range(j, T - 1)) - run.R[-1][j]
                                       for j in range(T - 1)) if T > 1 else 0.0 for run in runs)
    ratio = stat(run.general_loss / base_general for run in runs)
    graded = _graded(runs) if all(run.graded for run in runs) else {}
    return {
        "recall_right_after": right_after[0], "recall_right_after_std": right_after[1],
        "phase1_at_end": first_kept[0], "phase1_at_end_std": first_kept[1],
        "final_recall": final[0], "final_recall_std": final[1],
        "forgetting": forgetting[0], "forgetting_std": forgetting[1],
        "general_loss_ratio": ratio[0], "general_loss_ratio_std": ratio[1],
        "R": [[statistics.fmean(run.R[i][j] for run in runs) for j in range(T)] for i in range(T)],
        "R_per_seed": [run.R for run in runs],
        "general_loss": statistics.fmean(run.general_loss for run in runs),
        "seconds": statistics.fmean(run.seconds for run in runs),
        "phases": [run.phases for run in runs],
        "answers_last_seed": runs[-1].answers,
        **graded,
    }


def _graded(runs: list) -> dict:
    """The graded recall's matrices (``SeedRun.graded``: the told answers' loss ``L``, the told values'
    share among their relation's values ``C``) summarised as recall is: right after each phase, phase 1 at
    the end, final; mean and spread over seeds."""
    out: dict = {}
    for name, key, part in (("L", "answer_loss", 0), ("C", "choice", 1)):
        per_seed = [[row[part] for row in run.graded] for run in runs]
        T = len(per_seed[0])
        out[name] = [[statistics.fmean(m[i][j] for m in per_seed) for j in range(T)] for i in range(T)]
        out[f"{name}_per_seed"] = per_seed
        for what, values in (("right_after", [statistics.fmean(m[i][i] for i in range(T)) for m in per_seed]),
                             ("phase1_at_end", [m[-1][0] for m in per_seed]),
                             ("final", [statistics.fmean(m[-1]) for m in per_seed])):
            out[f"{key}_{what}"] = statistics.fmean(values)
            out[f"{key}_{what}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def acceptance(results: dict) -> dict:
    """The benchmark's targets against these results (None where a strategy is missing)."""
    s = results["strategies"]
    values, targets = {}, {}
    ours = s.get("memstream") or s.get("replay+ewc")
    if ours:
        values["recall_right_after"] = ours["recall_right_after"]
        values["phase1_at_end"] = ours["phase1_at_end"]
        values["general_loss_ratio"] = ours["general_loss_ratio"]
        targets.update(recall_right_after=(">=", 0.9), phase1_at_end=(">=", 0.9), general_loss_ratio=("<=", 1.03))
        if "joint" in s and ours is not s["joint"]:
            values["final_recall_vs_joint"] = ours["final_recall"] - s["joint"]["final_recall"]
            targets["final_recall_vs_joint"] = (">=", 0.0)
        if "naive" in s:
            naive = s["naive"]["phase1_at_end"]
            values["phase1_at_end_vs_naive"] = (ours["phase1_at_end"] / naive if naive > 0
                                                else (math.inf if ours["phase1_at_end"] > 0 else 0.0))
            targets["phase1_at_end_vs_naive"] = (">=", 1.5)
    met = {k: (values[k] >= b if op == ">=" else values[k] <= b) for k, (op, b) in targets.items()}
    return {"values": values, "targets": {k: f"{op} {b}" for k, (op, b) in targets.items()}, "met": met,
            "judged": "memstream" if "memstream" in s else "replay+ewc"}
