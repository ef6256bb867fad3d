"""``memstream serve --state DIR [--profile P ...] [--port N]``: an OpenAI-compatible endpoint for assistants.

Each profile is one model (``model: "ann"``), answered with its newest accepted version; a new version
is switched to with no request dropped (see :mod:`consumers.serving`).
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click

from memstream.cli.common import (bootstrap_option, config_options, existing_state_dir, open_stream_config,
                                  profiles_in, state_option)


@click.command("serve")
@state_option()
@click.option("--profile", "profiles", multiple=True, help="Profile to serve (repeatable; default: every one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--engine", type=click.Choice(["auto", "llama.cpp", "torch"]), default="auto", show_default=True,
              envvar="MEMSTREAM_SERVE_ENGINE", show_envvar=True,
              help="llama.cpp (base GGUF + GGUF adapters; auto: where installed) or torch (transformers + PEFT).")
@click.option("--threads", type=int, default=None, help="CPU threads for the engine (default: llama.cpp 2, torch all).")
@click.option("--poll", "poll_s", type=float, default=2.0, show_default=True,
              help="Seconds between checks of the registries (rollbacks, resets, runs without a broker).")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Follow model-updated events on the broker (kafka.bootstrap) to switch at once.")
@bootstrap_option()
@config_options
def serve_command(state_dir: Path, profiles: tuple[str, ...], host: str, port: int, engine: str,
                  threads: int | None, poll_s: float, follow: bool, bootstrap: str | None, config_file,
                  overrides) -> None:
    """Answer OpenAI chat requests with each profile's newest version (/v1/chat/completions, /v1/models).

    A profile named with --profile that has learned nothing yet is answered by the base until its first version."""
    from consumers.serving import EngineError, ServeProcess, make_engine

    from contracts.events import validate_profile

    chosen = [validate_profile(p) for p in profiles] or profiles_in(existing_state_dir(state_dir))
    config = open_stream_config(config_file, overrides, bootstrap)
    logging.basicConfig(level=logging.WARNING, format="memstream serve: %(message)s")
    try:
        process = ServeProcess(state_dir, chosen, make_engine(engine, threads), host=host, port=port,
                               poll_s=poll_s, kafka=config.kafka if follow else None,
                               config=config.learner_config())
        process.start()
    except (EngineError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    served = ", ".join(one.label for one in process.models.served.values()) or "nothing yet"
    click.echo(f"serving {served} with {process.models.engine.name} on {process.url}/v1 "
               f"(model = profile; /v1/models, /health, /metrics)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    process.stop()
    click.echo("stopped")
