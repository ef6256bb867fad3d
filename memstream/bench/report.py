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
from pathlib import Path
from typing import Any, Sequence

from learner.storage import atomic_write_bytes

__all__ = ["table", "markdown_table", "write_outputs", "plot_forgetting", "forgetting_rows"]


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


def write_outputs(results: dict, json_out: Path | None, markdown_out: Path | None, markdown: str) -> None:
    """Write the JSON and Markdown files that were asked for (atomically)."""
    if json_out is not None:
        atomic_write_bytes(json_out, (json.dumps(results, indent=2, sort_keys=True) + "\n").encode())
    if markdown_out is not None:
        atomic_write_bytes(markdown_out, (markdown.rstrip() + "\n").encode())


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
        "Targets (replay+ewc vs naive and joint):", "",
        markdown_table(["check", "value", "target", "met"],
                       [[k, v, acc["targets"].get(k, "-"), acc["met"].get(k)] for k, v in acc["values"].items()]),
        "",
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
