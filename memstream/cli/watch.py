"""``memstream watch [model-updated|drift|dead-letters|all]``: one line per event the worker publishes."""

from __future__ import annotations

import json

import click

from memstream.cli.common import bootstrap_option, config_options, open_stream_config

KINDS = {"model-updated": ("model-updated",), "drift": ("drift-alerts",), "dead-letters": ("dead-letters",),
         "all": ("model-updated", "drift-alerts", "dead-letters")}


def _jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


@click.command("watch")
@click.argument("what", type=click.Choice(sorted(KINDS)), default="all")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (the fields of the contract).")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest retained event, not the newest.")
@click.option("--group", default=None, help="Consumer group (a restart resumes where it left off).")
@click.option("--max", "max_events", type=int, default=None, help="Exit after this many events.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Exit after this many idle seconds.")
@bootstrap_option()
@config_options
def watch_command(what: str, as_json: bool, from_beginning: bool, group: str | None, max_events: int | None,
                  timeout_s: float | None, bootstrap: str | None, config_file, overrides) -> None:
    """Print model-updated events, drift alerts and dead letters as they arrive."""
    from consumers.subscriber import Subscriber, describe_event

    config = open_stream_config(config_file, overrides, bootstrap)

    def show(kind: str, event: dict) -> None:
        if as_json:
            click.echo(json.dumps({"event": kind, **event}, sort_keys=True, default=_jsonable))
        else:
            click.echo(describe_event(kind, event))

    with Subscriber(config.kafka, KINDS[what], group=group, from_beginning=from_beginning) as subscriber:
        try:
            subscriber.run(show, max_events=max_events, timeout_s=timeout_s)
        except KeyboardInterrupt:
            pass
