"""``memstream up``: the embedded broker, the topics and a worker, in one command; ``memstream broker``."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from memstream.cli.common import config_options, log_line, open_stream_config


ENGINE = click.option("--engine", type=click.Choice(["embedded", "kafka"]), default="embedded", show_default=True,
                      help="embedded: noida-db from PyPI; kafka: Apache Kafka, one KRaft node (Java, ./dev kafka-jars).")


def local_broker(engine: str, data_dir: Path, port: int, host: str = "127.0.0.1"):
    """A broker of ``engine`` on this machine (not started yet)."""
    from streams.broker import EmbeddedBroker
    from streams.kafka_server import ApacheKafka

    return (EmbeddedBroker if engine == "embedded" else ApacheKafka)(data_dir, port=port, host=host)


@click.command("broker")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False), default=Path(".memstream/broker"),
              show_default=True, help="Where the broker keeps its topics.")
@click.option("--port", type=int, default=9092, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@ENGINE
def broker_command(data_dir: Path, port: int, host: str, engine: str) -> None:
    """Run a Kafka-protocol broker in the foreground until SIGTERM/SIGINT."""
    broker = local_broker(engine, data_dir, port, host).start()
    log_line(f"broker ready on {broker.bootstrap} ({engine}, data: {data_dir})")
    _wait_for_signal()
    broker.stop()


def _wait_for_signal() -> None:
    received = []

    def handle(signum, _frame):
        received.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    while not received:
        signal.pause()


@click.command("up")
@click.option("--state", "state_dir", type=click.Path(path_type=Path, file_okay=False), default=Path(".memstream"),
              show_default=True, envvar="MEMSTREAM_STATE", help="Learner state (and the embedded broker's data).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT", help="Use this broker instead of starting one.")
@click.option("--port", type=int, default=9092, show_default=True, help="Port of the broker started here.")
@ENGINE
@config_options
def up_command(state_dir: Path, bootstrap: str | None, port: int, engine: str, config_file, overrides) -> None:
    """Start a Kafka-protocol broker (unless --bootstrap), create the topics, run a worker.

    Then publish with `memstream publish FILE.jsonl` and follow with `memstream watch`.
    """
    from streams.launch import run_worker

    broker = None
    if bootstrap is None:
        broker = local_broker(engine, state_dir / ("broker" if engine == "embedded" else "kafka"), port).start()
        bootstrap = broker.bootstrap
        log_line(f"{engine} broker ready on {bootstrap}")
    config = open_stream_config(config_file, overrides, bootstrap)
    try:
        code = run_worker(config, state_dir / "profiles", log=log_line)
    finally:
        if broker is not None:
            broker.stop()
    raise SystemExit(code)
