"""The ``memstream`` command: one subcommand per module (faust style)."""

from __future__ import annotations

import sys

import click

from memstream.cli.bench import bench_group
from memstream.cli.bench_brokers import brokers_bench_command
from memstream.cli.bench_idle import idle_bench_command
from memstream.cli.bench_serve import serve_bench_command
from memstream.cli.bench_trainer import trainer_bench_command
from memstream.cli.common import run_cleanly
from memstream.cli.config_cmd import config_command
from memstream.cli.demo import demo_command
from memstream.cli.export import export_command
from memstream.cli.generate import generate_command
from memstream.cli.handoff import handoff_group
from memstream.cli.learn import learn_command
from memstream.cli.publish import publish_command
from memstream.cli.registry import registry_group
from memstream.cli.serve import serve_command
from memstream.cli.stats import stats_command
from memstream.cli.up import broker_command, up_command
from memstream.cli.watch import watch_command
from memstream.cli.worker import worker_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="memstream")
def cli() -> None:
    """memstream: continual learning from a stream of memory events."""


cli.add_command(learn_command)
cli.add_command(registry_group)
cli.add_command(stats_command)
cli.add_command(generate_command)
cli.add_command(export_command)
cli.add_command(config_command)
cli.add_command(publish_command)
cli.add_command(watch_command)
cli.add_command(serve_command)
cli.add_command(handoff_group)
cli.add_command(worker_command)
cli.add_command(up_command)
cli.add_command(broker_command)
cli.add_command(demo_command)
bench_group.add_command(serve_bench_command)
bench_group.add_command(idle_bench_command)
bench_group.add_command(brokers_bench_command)
bench_group.add_command(trainer_bench_command)
cli.add_command(bench_group)


def main(argv: list[str] | None = None) -> int:
    """Entry point: readable one-line errors, exit code 2 for bad input."""
    return run_cleanly(cli, argv if argv is not None else sys.argv[1:])
