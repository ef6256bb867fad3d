"""``memstream bench serve``: recall, failed requests and latency through ``memstream serve`` while it learns."""

from __future__ import annotations

from pathlib import Path

import click

from memstream.cli.bench import _outputs
from memstream.cli.common import config_options, open_config


@click.command("serve")
@click.option("--engine", type=click.Choice(["llama.cpp", "torch"]), default="llama.cpp", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Which fictional person.")
@click.option("--facts", type=int, default=10, show_default=True, help="Facts learned (3 memories each).")
@click.option("--threads", type=int, default=2, show_default=True, help="The engine's CPU threads.")
@click.option("--requests", "swap_requests", type=int, default=200, show_default=True,
              help="Requests sent while the new version is switched in.")
@_outputs
@config_options
def serve_bench_command(engine: str, seed: int, facts: int, threads: int, swap_requests: int,
                        json_out: Path | None, markdown_out: Path | None, config_file, overrides) -> None:
    """The base and the learned version through the endpoint (HTTP), the same version in torch, and a
    version switched in while requests come: none may fail."""
    from memstream.bench.report import markdown_table, table, write_outputs
    from memstream.bench.serving import run_serve_bench, summary_rows

    config = open_config(config_file, overrides)
    results = run_serve_bench(config, engine=engine, seed=seed, facts=facts, threads=threads,
                              swap_requests=swap_requests, say=lambda m: click.echo(m, err=True))
    headers = ["measure", "value", "baseline", "ratio", "target"]
    rows = summary_rows(results)
    click.echo(table(headers, rows))
    write_outputs(results, json_out, markdown_out, "# memstream serve\n\n" + markdown_table(headers, rows) + "\n")
