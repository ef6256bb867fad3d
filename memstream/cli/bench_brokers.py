"""``memstream bench brokers``: the embedded broker against Apache Kafka, in one run."""

from __future__ import annotations

from pathlib import Path

import click

from memstream.cli.bench import _outputs


@click.command("brokers")
@click.option("--events", "n", type=int, default=20000, show_default=True, help="Events published and read.")
@click.option("--profiles", type=int, default=6, show_default=True)
@click.option("--idle-seconds", "idle_s", type=float, default=30.0, show_default=True,
              help="How long each idle CPU measure lasts.")
@click.option("--engines", default="embedded,kafka", show_default=True, help="Comma-separated: embedded, kafka.")
@_outputs
def brokers_bench_command(n: int, profiles: int, idle_s: float, engines: str, json_out: Path | None,
                          markdown_out: Path | None) -> None:
    """Start time, publish and consume rates, the worker's ingest rate and idle CPU of each broker
    (Apache Kafka needs Java 17 and its jars: ./dev kafka-jars)."""
    from memstream.bench.brokers import ENGINES, bench_brokers, summary_rows
    from memstream.bench.report import markdown_table, table, write_outputs

    chosen = tuple(e.strip() for e in engines.split(",") if e.strip())
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown or not chosen:
        raise click.UsageError(f"--engines: {', '.join(unknown) or 'none given'}; choose from {', '.join(ENGINES)}")
    results = bench_brokers(n=n, profiles=profiles, idle_s=idle_s, engines=chosen,
                            say=lambda m: click.echo(m, err=True))
    headers = ["measure", *[e for e in ENGINES if e in chosen]]
    rows = summary_rows(results)
    click.echo(table(headers, rows))
    write_outputs(results, json_out, markdown_out,
                  "# The embedded broker and Apache Kafka\n\n" + markdown_table(headers, rows) + "\n")
