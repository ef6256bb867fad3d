"""``memstream bench ingest``: throughput numbers, as a table and JSON."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from memstream.cli.common import bootstrap_option, config_options, open_stream_config


@click.group("bench")
def bench_group() -> None:
    """Benchmarks that print numbers (and write JSON), measured against baselines in the same run."""


@bench_group.command("ingest")
@click.option("--events", "n", type=int, default=20000, show_default=True, help="Events per measurement.")
@click.option("--profiles", type=int, default=6, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the results here as JSON.")
@bootstrap_option()
@config_options
def ingest_command(n: int, profiles: int, json_out: Path | None, bootstrap: str | None, config_file,
                   overrides) -> None:
    """Events/s through the broker and the ingest app vs a plain consumer, idle and while training.

    Without --bootstrap an embedded broker is started for the run.
    """
    from streams.bench import bench_ingest
    from streams.broker import EmbeddedBroker, free_port

    work = Path(tempfile.mkdtemp(prefix="memstream-bench-"))
    broker = None
    if bootstrap is None and not any(o.startswith("kafka.bootstrap=") for o in overrides):
        broker = EmbeddedBroker(work / "broker", free_port()).start()
        bootstrap = broker.bootstrap
    try:
        config = open_stream_config(config_file, overrides, bootstrap)
        results = bench_ingest(config.kafka, work, n=n, profiles=profiles)
    finally:
        if broker is not None:
            broker.stop()
    click.echo(f"{'path':<34}{'events/s':>12}")
    click.echo(f"{'plain kafka-python consumer':<34}{results['plain']['rate']:>12,.0f}")
    click.echo(f"{'ingest app, no consolidation':<34}{results['ingest_idle']['rate']:>12,.0f}")
    click.echo(f"{'ingest app, consolidations running':<34}{results['ingest_busy']['rate']:>12,.0f}")
    click.echo(f"ratio ingest/plain: {results['ratio_idle_vs_plain']:.2f} (target >= 0.70); "
               f"ratio busy/idle: {results['ratio_busy_vs_idle']:.2f} (target >= 0.50); "
               f"runs during busy: {results['ingest_busy']['runs']}")
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=2, sort_keys=True))
