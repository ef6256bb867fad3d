"""How every benchmark reports: a plain table on screen, JSON, a short Markdown report, PNG plots.

>>> print(table(["name", "x"], [["a", 1.23456], ["bb", None]]))
name  x
a     1.235
bb    -
>>> print(markdown_table(["name", "x"], [["a", 1.5]]))
| name | x |
|---|---|
| a | 1.500 |
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

from learner.store.storage import atomic_write_bytes, give_default_mode

__all__ = ["table", "markdown_table", "machine", "write_outputs", "plot_forgetting", "forgetting_rows"]


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [list(headers)] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _targets(acceptance: dict, title: str) -> list[str]:
    """A benchmark's targets as Markdown lines: each check, its value, its target and whether it was met."""
    rows = [[k, v, acceptance["targets"].get(k, "-"), acceptance["met"].get(k)]
            for k, v in acceptance["values"].items()]
    return [title, "", markdown_table(["check", "value", "target", "met"], rows), ""]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What ran a benchmark, for reading its figures later: the CPU, its cores, Python, and where torch is
    loaded its version, threads, whether the CPU multiplies bf16 in hardware, and the GPU if any.

    >>> sorted(k for k in machine() if k in ("cpu", "cores", "python"))
    ['cores', 'cpu', 'python']
    """
    found: dict[str, Any] = {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()}
    torch = sys.modules.get("torch")  # a benchmark that never loaded torch does not pay for it here
    if torch is not None:
        from learner.model.loading import cpu_computes_bf16

        found.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), cpu_bf16=cpu_computes_bf16())
        if torch.cuda.is_available():
            found["gpu"] = torch.cuda.get_device_name(0)
    return found


def write_outputs(results: dict, json_out: Path | None, markdown_out: Path | None, markdown: str) -> None:
    """Write the JSON and Markdown files that were asked for (atomically, readable as a plain ``open``'s);
    the JSON says which machine ran it (:func:`machine`)."""
    results = {"machine": machine(), **results}
    for path, data in ((json_out, json.dumps(results, indent=2, sort_keys=True)), (markdown_out, markdown.rstrip())):
        if path is not None:
            atomic_write_bytes(path, (data + "\n").encode())
            give_default_mode(path)


FORGETTING_HEADERS = ["strategy", "forgetting", "±", "plasticity", "±", "final loss", "±", "BWT", "FWT", "seconds"]


def forgetting_rows(results: dict) -> list[list[Any]]:
    rows = []
    for name, s in results["strategies"].items():
        rows.append([name, s["forgetting"], s["forgetting_std"], s["plasticity"], s["plasticity_std"],
                     s["final_loss"], s["final_loss_std"], s["bwt"], s["fwt"], round(s["seconds"])])
    return rows


def forgetting_markdown(results: dict, plots: list[Path], command: str) -> str:
    setup = results["setup"]
    acc = results["acceptance"]
    lines = [
        "# Forgetting benchmark", "",
        f"Command: `{command}`", "",
        f"Domains in stage order: {', '.join(setup['domains'])}; loss in {setup['loss_unit']} on "
        f"{sum(setup['heldout'].values())} held-out events; seeds {setup['seeds']}; {setup['steps_per_stage']} "
        f"LoRA steps per stage (batch {setup['batch_size']}) after a {setup['foundation_steps']}-step foundation.",
        "Forgetting and BWT: lower forgetting / higher BWT is better. ± is the standard deviation over seeds.", "",
        markdown_table(FORGETTING_HEADERS, forgetting_rows(results)), "",
        *_targets(acc, "Targets (replay+ewc vs naive and joint):"),
    ]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines)


def plot_forgetting(results: dict, out_dir: Path, stem: str = "forgetting") -> list[Path]:
    """Two PNGs: the mean R matrix per strategy as heatmaps; loss per domain over stages."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    strategies = results["strategies"]
    domains = results["setup"]["domains"]
    unit = results["setup"]["loss_unit"]
    names = list(strategies)
    paths = []

    lo = min(min(min(r) for r in s["R"]) for s in strategies.values())
    hi = max(max(max(r) for r in s["R"]) for s in strategies.values())
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        R = strategies[name]["R"]
        image = ax.imshow(R, cmap="viridis_r", vmin=lo, vmax=hi)
        for i, row in enumerate(R):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
        ax.set_title(name)
        ax.set_xticks(range(len(domains)), domains, rotation=45, fontsize=7)
        ax.set_yticks(range(len(R)), [f"after {d}" for d in domains], fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label=f"held-out loss ({unit})")
    path = out_dir / f"{stem}-R.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)

    initial = results["setup"]["initial"]
    fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains), 3.0), squeeze=False, sharey=False)
    stages = ["foundation"] + domains
    for j, (ax, domain) in enumerate(zip(axes[0], domains)):
        for name in names:
            values = [initial[j]] + [row[j] for row in strategies[name]["R"]]
            ax.plot(range(len(stages)), values, marker="o", markersize=3, label=name)
        ax.axvline(j + 1, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(f"{domain} (trained at stage {j + 1})", fontsize=9)
        ax.set_xticks(range(len(stages)), stages, rotation=45, fontsize=7)
        ax.set_ylabel(unit, fontsize=8)
    axes[0][0].legend(fontsize=7)
    path = out_dir / f"{stem}-loss-per-domain.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
    return paths


RECALL_HEADERS = ["strategy", "recall right after", "±", "phase 1 at end", "±", "final recall", "forgetting",
                  "general loss ratio", "answer loss: right after", "phase 1 at end", "final", "value choice: final",
                  "seconds"]


def recall_rows(results: dict) -> list[list[Any]]:
    return [[name, s["recall_right_after"], s["recall_right_after_std"], s["phase1_at_end"], s["phase1_at_end_std"],
             s["final_recall"], s["forgetting"], s["general_loss_ratio"], s.get("answer_loss_right_after"),
             s.get("answer_loss_phase1_at_end"), s.get("answer_loss_final"), s.get("choice_final"), round(s["seconds"])]
            for name, s in results["strategies"].items()]


def recall_markdown(results: dict, plots: list[Path], command: str) -> str:
    setup, acc = results["setup"], results["acceptance"]
    lines = [
        "# Recall benchmark", "",
        f"Command: `{command}`", "",
        f"Base {setup['base']}; people {setup.get('people', 'facts')}; seeds {setup['seeds']}; "
        f"{setup['phases']} phases of {setup['facts_per_phase']} facts "
        f"({setup['events_per_phase']} memory events, {setup['questions_per_phase']} held-out questions each); "
        f"{setup['epochs']} epochs, {setup.get('views', 0)} views per memory, objective "
        f"{setup.get('objective', 'ce')}, lr {setup['lr']}, batch {setup['batch_size']}, LoRA r={setup['lora_r']} "
        f"alpha={setup['lora_alpha']} on {setup['target_modules']}; replay ratio {setup['replay_ratio']}, "
        f"EWC lambda {setup['ewc_lambda']}. The untrained base recalls "
        + ", ".join(f"{x:.0%}" for x in setup["base_recall"]) + " of each phase"
        + (", and with each fact's memories in its context " + ", ".join(
            f"{x:.0%}" for x in setup["base_recall_in_context"]) if setup.get("base_recall_in_context") else "")
        + (". Graded recall of the base: the told answers' loss (nats/token) " + ", ".join(
            f"{x:.2f}" for x in setup["base_answer_loss"]) + "; the told value's probability among its relation's "
           f"values (chance {setup['choice_chance']:.3f}) " + ", ".join(f"{x:.3f}" for x in setup["base_choice"])
           if setup.get("base_choice") else "")
        + ". General-text loss of the base: "
        f"{setup['base_general_loss']:.3f} nats/token on {setup['general_events']} held-out public-stream events.",
        "", markdown_table(RECALL_HEADERS, recall_rows(results)), "",
        *_targets(acc, f"Targets ({acc['judged']}):"),
    ]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines)


def plot_recall(results: dict, out_dir: Path, stem: str = "recall") -> list[Path]:
    """The mean recall matrix of each strategy as a heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(results["strategies"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        R = results["strategies"][name]["R"]
        image = ax.imshow(R, cmap="viridis", vmin=0, vmax=1)
        for i, row in enumerate(R):
            for j, value in enumerate(row):
                ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=8,
                        color="black" if value > 0.6 else "white")
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(R)), [f"phase {j + 1}" for j in range(len(R))], fontsize=7)
        ax.set_yticks(range(len(R)), [f"after {i + 1}" for i in range(len(R))], fontsize=7)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="recall of held-out questions")
    path = out_dir / f"{stem}-R.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [path]


DRIFT_HEADERS = ["detector", "abrupt median", "p90", "missed", "similar median", "similar max", "gradual median",
                 "gradual < 50%", "recurring median", "FAs/10k stationary", "FAs before switch", "µs/event"]


def drift_rows(results: dict) -> list[list[Any]]:
    rows = []
    for name, d in results["detectors"].items():
        s = d["summary"]
        missed = s["abrupt"]["missed"] + s["gradual"]["missed"]
        rows.append([name, s["abrupt"]["median_delay"], s["abrupt"]["p90_delay"], missed, s["similar"]["median_delay"],
                     s["similar"]["max_delay"], s["gradual"]["median_delay"],
                     f"{s['gradual']['before_half']}/{s['gradual']['switches']}", s["recurring"]["median_delay"],
                     s["stationary"]["false_alarms_per_10k"], s["false_alarms_before_switch"], round(d["us_per_event"], 1)])
    return rows


def drift_markdown(results: dict, command: str) -> str:
    setup = results["setup"]
    streams = ", ".join(f"{n} {k}" for k, n in setup["streams"].items())
    return "\n".join([
        "# Drift benchmark", "", f"Command: `{command}`", "",
        f"Streams: {streams} (seeds {setup['seeds']}; {setup['n_before']} events before a switch, {setup['n_after']} "
        f"after; gradual ramps over {setup['ramp']}; recurring B segments of {setup['recur_len']}; "
        f"{setup['stationary_len']} events per stationary stream). Delays in events after the switch.", "",
        markdown_table(DRIFT_HEADERS, drift_rows(results)), "",
        markdown_table(["check (memstream)", "value"], list(results["checks"].items())), ""])
