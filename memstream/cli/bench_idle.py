"""``memstream bench idle``: what an idle ``memstream up`` costs in CPU."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

OUT_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command("idle")
@click.option("--seconds", type=float, default=60.0, show_default=True, help="How long to measure.")
@click.option("--json", "json_out", type=OUT_FILE, default=None, help="Write the results here as JSON.")
@click.option("--markdown", "markdown_out", type=OUT_FILE, default=None, help="Write a Markdown report here.")
def idle_bench_command(seconds: float, json_out: Path | None, markdown_out: Path | None) -> None:
    """CPU of an idle `memstream up` (embedded broker + worker, no events), in percent of one core."""
    from memstream.bench.idle import bench_idle
    from memstream.bench.report import markdown_table, table, write_outputs

    results = bench_idle(seconds)
    headers = ["process", "% of a core"]
    rows = [[p["command"], p["cpu_percent"]] for p in results["processes"]]
    summary = (f"idle memstream up: {results['cpu_percent']:.2f}% of one core over {results['seconds']:g} s "
               f"(target <= {results['target_percent']:g}%: {'met' if results['met'] else 'not met'})")
    click.echo(table(headers, rows))
    click.echo(summary)
    command = "memstream " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    markdown = "\n".join(["# Idle cost", "", f"Command: `{command}`", "", markdown_table(headers, rows), "", summary])
    write_outputs(results, json_out, markdown_out, markdown)
