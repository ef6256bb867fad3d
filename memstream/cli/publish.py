"""``memstream publish FILE.jsonl|-`` and ``memstream publish --watch DIR``: send memory events."""

from __future__ import annotations

import time
from pathlib import Path

import click

from memstream.cli.common import bootstrap_option, config_options, echo_json, open_stream_config

MAX_ERRORS_SHOWN = 20


@click.command("publish")
@click.argument("source", required=False, type=click.Path(path_type=Path, allow_dash=True))
@click.option("--watch", "watch_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Publish each new JSON file an assistant writes into this directory (runs until stopped).")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds between looks at --watch DIR.")
@click.option("--once", is_flag=True, help="With --watch: publish what is there now, then exit.")
@click.option("--batch", type=int, default=500, show_default=True, help="Events sent before waiting for acks.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@bootstrap_option()
@config_options
def publish_command(source: Path | None, watch_dir: Path | None, interval: float, once: bool, batch: int,
                    as_json: bool, bootstrap: str | None, config_file, overrides) -> None:
    """Publish memory events (one JSON map per line; `v`, `ts` and `id` are filled in when missing).

    Returns once the broker acknowledged every event. Bad lines are reported and skipped
    (exit code 1 when there were any); the good ones are still published.
    """
    if (source is None) == (watch_dir is None):
        raise click.UsageError("give a FILE.jsonl (or - for stdin), or --watch DIR")
    from producers.producer import MemoryProducer

    config = open_stream_config(config_file, overrides, bootstrap)
    if source is not None and str(source) != "-" and not source.is_file():
        raise click.ClickException(f"{source}: no such file")
    with MemoryProducer(config.kafka, max_event_bytes=config.worker.max_event_bytes,
                        max_text_chars=config.worker.max_text_chars) as producer:
        if watch_dir is not None:
            summary = _watch(producer, watch_dir, interval, once)
        else:
            summary = _publish_file(producer, None if str(source) == "-" else source, batch)
    if as_json:
        echo_json(summary)
    else:
        click.echo(f"published {summary['published']} events to {config.kafka.topic_prefix}memory-events "
                   f"({summary['errors']} bad inputs skipped)", err=True)
    if summary["errors"]:
        raise SystemExit(1)


def _publish_file(producer, path: Path | None, batch: int) -> dict:
    from contracts.events import read_jsonl

    published, errors, pending = 0, 0, []
    for index, event, error in read_jsonl(path):
        if error is not None:
            errors += 1
            if errors <= MAX_ERRORS_SHOWN:
                click.echo(f"{path or 'stdin'}:{index + 1}: {error}", err=True)
            continue
        pending.append(event)
        if len(pending) >= batch:
            published += len(producer.publish_many(pending))
            pending = []
    if pending:
        published += len(producer.publish_many(pending))
    return {"published": published, "errors": errors}


def _watch(producer, directory: Path, interval: float, once: bool) -> dict:
    from producers.sources import DirectoryWatcher

    watcher = DirectoryWatcher(directory)
    totals = {"published": 0, "errors": 0, "duplicates": 0}
    try:
        while True:
            scan = watcher.scan()
            for name, reason in scan.errors:
                click.echo(f"{directory / name}: {reason}", err=True)
            if scan.new:
                producer.publish_many(scan.new)
            watcher.mark_published(scan.new, scan)  # only after the broker acknowledged them
            totals["published"] += len(scan.new)
            totals["errors"] += len(scan.errors)
            totals["duplicates"] += len(scan.duplicates)
            if scan.new:
                click.echo(f"published {len(scan.new)} new memories from {directory}", err=True)
            if once:
                return totals
            time.sleep(interval)
    except KeyboardInterrupt:
        return totals
