"""``memstream config``: every setting with its default, or the effective values."""

from __future__ import annotations

import click

from learner.config import describe
from memstream.cli.common import config_options, open_stream_config
from streams.settings import StreamConfig


@click.command("config")
@config_options
@click.option("--effective", is_flag=True, help="Print the effective config (file, environment, --set) as JSON.")
def config_command(config_file, overrides, effective: bool) -> None:
    """Print every setting with its default and help, as a TOML file you can edit."""
    if effective:
        click.echo(open_stream_config(config_file, overrides).to_json())
    else:
        click.echo(describe(StreamConfig))
