"""``memstream worker --state DIR``: run the ingest worker against a broker until SIGTERM."""

from __future__ import annotations

from pathlib import Path

import click

from memstream.cli.common import bootstrap_option, config_options, log_line, open_stream_config, state_option


@click.command("worker")
@state_option()
@bootstrap_option()
@config_options
@click.option("--loglevel", type=click.Choice(["crit", "error", "warn", "info", "debug"]), default="warn",
              show_default=True, help="faust's log level.")
def worker_command(state_dir: Path, bootstrap: str | None, config_file, overrides, loglevel: str) -> None:
    """Ingest memory events, learn per profile, consolidate in the background, publish what happens.

    Several workers with the same [worker] group share the profiles; SIGTERM stops one cleanly
    (a run in progress is abandoned without a partial version, state is saved, the group is left).
    """
    from streams.launch import run_worker

    config = open_stream_config(config_file, overrides, bootstrap)
    _check_writable(state_dir)
    raise SystemExit(run_worker(config, state_dir, log=log_line, loglevel=loglevel))


def _check_writable(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / ".memstream-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise click.ClickException(f"state directory {str(state_dir)!r} is not writable: {exc.strerror}") from None
