"""``memstream bench trainer``: one consolidation in a worker's trainer process against the same run in process."""

from __future__ import annotations

from pathlib import Path

import click

from memstream.cli.bench import _outputs
from memstream.cli.common import config_options, open_config


@click.command("trainer")
@click.option("--events", "n", type=int, default=36, show_default=True,
              help="The first N events of the bundled sample stream (its first phase: 36).")
@click.option("--threads", type=int, default=None, help="Torch threads in both places (default: torch's).")
@click.option("--pairs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs in each place, the order alternating; the ratio is the median of the pairs'.")
@_outputs
@config_options
def trainer_bench_command(n: int, threads: int | None, pairs: int, json_out: Path | None, markdown_out: Path | None,
                          config_file, overrides) -> None:
    """The same plan computed in process (as `memstream learn` does) and in the worker's trainer process:
    their times part by part (medians), and the ratio of the runs once checked out (target <= 1.1), in
    pairs whose order alternates."""
    from memstream.bench.report import markdown_table, table, write_outputs
    from memstream.bench.trainer import bench_trainer, summary_rows
    from memstream.samples.stream import sample_stream

    config = open_config(config_file, overrides)
    results = bench_trainer(config, sample_stream()[:n], threads=threads, pairs=pairs, say=lambda m: click.echo(m, err=True))
    headers = ["measure", "in process", "trainer process"]
    rows = summary_rows(results)
    summary = (f"ratio trainer process / in process, the run once checked out: {results['ratio']:.3f}, "
               f"the median of {pairs} pair(s): {', '.join(f'{r:.3f}' for r in results['pair_ratios'])} "
               f"(target <= {results['target_ratio']}; {results['threads']} threads)")
    click.echo(table(headers, rows))
    click.echo(summary)
    write_outputs(results, json_out, markdown_out,
                  "# A run in the worker's trainer process\n\n" + markdown_table(headers, rows) + "\n\n" + summary + "\n")
