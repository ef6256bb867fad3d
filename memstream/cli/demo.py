"""``memstream demo``: the whole loop on the bundled sample stream, on screen.

An embedded broker starts, a worker process joins, the sample stream is published phase by
phase, and a subscriber prints every drift alert and model-updated event as it arrives; at the
end the model answers a few questions before (original base) and after (current version).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from memstream.cli.common import config_options, open_stream_config

PROMPTS = ("Any tips for risotto?", "How should I handle flaky tests for the parser?", "When do I book the passport?")
PHASES = (450, 400, 400)  # the sample stream's three phases (see learner/sample_data.py)


def _answer(state: Path, profile: str, version: int | None, prompt: str) -> str:
    from learner.config import LearnerConfig
    from learner.generate import sample
    from learner.online import load_model_at, version_config
    from learner.registry import ModelRegistry

    registry = ModelRegistry.open(state, profile, LearnerConfig().model.base, writer=False)
    model = load_model_at(registry, version, version_config(registry, version, LearnerConfig()))
    text = sample(model, prompt, 90, 0.8, 40, 0).splitlines()[0] if prompt else ""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


@click.command("demo")
@click.option("--state", "state_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path(".memstream-demo"), show_default=True, help="Where the demo keeps everything (wiped first).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT", help="Use this broker instead of an embedded one.")
@config_options
def demo_command(state_dir: Path, bootstrap: str | None, config_file, overrides) -> None:
    """Run broker, worker, a sample memory stream and its consolidations, and show what happens."""
    import shutil

    from consumers.subscriber import Subscriber, describe_event
    from learner.sample_data import sample_stream_path
    from producers.producer import MemoryProducer
    from streams.broker import EmbeddedBroker, free_port
    from streams.topics import ensure_topics

    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker(state_dir / "broker", free_port()).start()
        bootstrap = broker.bootstrap
        click.echo(f"== embedded Kafka-protocol broker (noida-db) listening on {bootstrap}")
    config = open_stream_config(config_file, overrides + ("worker.instance_id=memstream-demo",), bootstrap)
    ensure_topics(config.kafka)
    profiles = state_dir / "profiles"
    log_path = state_dir / "worker.log"
    set_args = [a for o in overrides for a in ("--set", o)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "memstream", "worker", "--state", str(profiles), "--bootstrap", bootstrap,
         "--set", "worker.instance_id=memstream-demo", *set_args],
        stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    click.echo(f"== worker started (pid {worker.pid}, log {log_path})")
    updates: list[dict] = []
    stop = threading.Event()

    def follow() -> None:
        with Subscriber(config.kafka, ["model-updated", "drift-alerts"], from_beginning=True) as sub:
            while not stop.is_set():
                for kind, event in sub.poll(0.5):
                    click.echo("   " + describe_event(kind, event))
                    if kind == "model-updated":
                        updates.append(event)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    events = [json.loads(line) for line in sample_stream_path().read_text().splitlines()]
    profile = events[0]["profile"]
    try:
        with MemoryProducer(config.kafka) as producer:
            start = 0
            for number, size in enumerate(PHASES, start=1):
                phase = events[start:start + size]
                domains = sorted({e.get("meta", {}).get("domain", "?") for e in phase})
                click.echo(f"\n== phase {number}: publishing {len(phase)} memory events ({', '.join(domains)})")
                for i in range(0, len(phase), 50):
                    producer.publish_many(phase[i:i + 50])
                start += size
                seen_before = len(updates)
                _wait(lambda: len(updates) > seen_before or worker.poll() is not None, 900)
                _wait(lambda: _events_seen(profiles, profile) >= start or worker.poll() is not None, 300)
                click.echo(f"   the worker has taken in {_events_seen(profiles, profile)} of {start} events")
        _wait(lambda: not _run_due(profiles, profile, updates) or worker.poll() is not None, 900)
        if worker.poll() is not None:
            raise click.ClickException(f"the worker exited with code {worker.returncode} (see {log_path})")
    finally:
        stop.set()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
    follower.join(timeout=5)
    accepted = [u for u in updates if u["accepted"]]
    click.echo(f"\n== {len(updates)} consolidations, {len(accepted)} accepted; current version "
               f"{accepted[-1]['version'] if accepted else None}")
    if accepted:
        click.echo("== what it learned: the untrained base vs the current version")
        for prompt in PROMPTS:
            click.echo(f"\n   Q: {prompt}")
            click.echo(f"   original base: {_answer(profiles, profile, None, prompt)}")
            click.echo(f"   current v{accepted[-1]['version']}:  "
                       f"{_answer(profiles, profile, accepted[-1]['version'], prompt)}")
    click.echo(f"\nEverything is in {state_dir}/: try `memstream registry list --state {profiles}`.")


def _events_seen(profiles: Path, profile: str) -> int:
    try:
        return json.loads((profiles / profile / "learner_state.json").read_text())["events_seen"]
    except (OSError, ValueError, KeyError):
        return 0


def _run_due(profiles: Path, profile: str, updates: list[dict]) -> bool:
    """True while the worker still has a consolidation to do (a count it has not covered)."""
    try:
        state = json.loads((profiles / profile / "learner_state.json").read_text())
    except (OSError, ValueError):
        return True
    sched = state["scheduler"]
    return bool(sched["requested"]) or sched["new_examples"] >= sched["count"]


def _wait(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.5)
