"""``memstream bench idle``: what an idle ``memstream up`` costs in CPU."""

from __future__ import annotations

from pathlib import Path

import click

from memstream.cli.bench import _command_line, _outputs


@click.command("idle")
@click.option("--seconds", type=float, default=60.0, show_default=True, help="How long to measure.")
@_outputs
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
    markdown = "\n".join(["# Idle cost", "", f"Command: `{_command_line()}`", "", markdown_table(headers, rows), "",
                          summary])
    write_outputs(results, json_out, markdown_out, markdown)
