"""``memstream demo``: the whole loop on the bundled sample stream, on screen.

An embedded broker starts, a worker process joins, the sample stream (a person's everyday memories
and the facts they tell their assistant, in three phases) is published phase by phase, and the
screen shows what happens as it happens: drift alerts with the words that moved, the progress of
each consolidation while it computes, each ModelUpdated event. Each phase waits for the run it
triggered. At the end the original base and the current version answer the person's questions —
asked in other words than the memories used — side by side, with a tally over every question.

The demo's settings are ``memstream/samples/data/demo.toml``, beside the sample stream (one consolidation
per phase; small drift windows for a short stream); ``--config`` replaces them, ``--set`` goes on top,
and the answers at the end use the same settings.
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

PROGRESS_WORDS = ("consolidating", "rehearsal:", "step ", "version ", "run ", "second attempt")


def _demo_config() -> Path:
    from memstream.samples.stream import sample_stream_path

    return sample_stream_path().parent / "demo.toml"


def _state(profiles: Path, profile: str) -> dict:
    try:
        return json.loads((profiles / profile / "learner_state.json").read_text())
    except (OSError, ValueError):
        return {}


def _runs(profiles: Path, profile: str) -> list[dict]:
    """The profile's finished runs, from its registry (accepted or not)."""
    try:
        return json.loads((profiles / profile / "registry.json").read_text()).get("training_history", [])
    except (OSError, ValueError):
        return []


def _tail(path: Path, stop: threading.Event) -> None:
    """Print the worker's progress lines (a consolidation's steps) while it computes."""
    while not path.exists() and not stop.is_set():
        time.sleep(0.2)
    with open(path, errors="replace") as fh:
        while not stop.is_set():
            line = fh.readline()
            if not line:
                time.sleep(0.3)
                continue
            if any(word in line for word in PROGRESS_WORDS) and "model-updated" not in line:
                click.echo("   | " + line.rstrip())


def _wait(condition, what: str, worker: subprocess.Popen, log_path: Path, stopping: "_Stopping") -> None:
    """Wait for ``condition`` as long as the worker lives (a busy machine is slow, not broken) and no signal
    asked the demo to stop (then it leaves with the signal's exit code, 128 + its number)."""
    while not condition():
        stopping.check()
        if worker.poll() is not None:
            raise click.ClickException(f"the worker exited with code {worker.returncode} while waiting for {what} "
                                       f"(see {log_path})")
        stopping.wait(0.5)
    stopping.check()


class _Stopping(threading.Event):
    """Set by SIGTERM while the broker and worker run: the demo stops at its next wait, never inside a
    client call, so what it started is stopped in order (worker first, broker last), nothing half-sent."""

    signum = 0

    def handle(self, signum: int, _frame) -> None:
        self.signum = signum
        self.set()

    def check(self) -> None:
        if self.is_set():
            raise SystemExit(128 + self.signum)


def _leave(signum: int, _frame) -> None:
    sys.exit(128 + signum)


def _stop_worker(worker: subprocess.Popen | None, grace_s: float = 30.0) -> None:
    """SIGTERM (the worker abandons a run in progress and saves its state), SIGKILL to its whole session
    after ``grace_s``."""
    import os

    if worker is None or worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        worker.wait()


@click.command("demo")
@click.option("--state", "state_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path(".memstream-demo"), show_default=True, help="Where the demo keeps everything (wiped first).")
@click.option("--bootstrap", default=None, metavar="HOST:PORT", help="Use this broker instead of an embedded one.")
@config_options
def demo_command(state_dir: Path, bootstrap: str | None, config_file, overrides) -> None:
    """Run broker, worker, the sample memory stream and its consolidations, and show what the model learned."""
    import shutil

    from consumers.subscriber import Subscriber, describe_event
    from memstream.samples.stream import sample_person
    from streams.broker import EmbeddedBroker, free_port
    from streams.topics import ensure_topics

    # stopped by a signal (kill, a closed terminal) while nothing runs beside it: it leaves at once
    signal.signal(signal.SIGTERM, _leave)
    config_file = config_file or _demo_config()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    config = open_stream_config(config_file, overrides + ("worker.instance_id=memstream-demo",), bootstrap)
    _prepare_model(config)
    events = _sample_events()
    _say_when_the_first_run_waits(config.learner_config(), len(_phase(events, 0)))
    broker = EmbeddedBroker(state_dir / "broker", free_port()) if bootstrap is None else None
    worker = None
    stop, stopping = threading.Event(), _Stopping()
    updates: list[dict] = []
    threads: list[threading.Thread] = []
    profiles = state_dir / "profiles"
    log_path = state_dir / "worker.log"
    # once the broker and worker start, a signal asks the demo to stop: at its next wait, stopping them in order
    signal.signal(signal.SIGTERM, stopping.handle)
    try:
        if broker is not None:
            bootstrap = broker.start().bootstrap
            click.echo(f"== embedded Kafka-protocol broker (noida-db) listening on {bootstrap}")
            config = open_stream_config(config_file, overrides + ("worker.instance_id=memstream-demo",), bootstrap)
        ensure_topics(config.kafka)
        set_args = [a for o in overrides for a in ("--set", o)]
        worker = subprocess.Popen(
            [sys.executable, "-m", "memstream", "worker", "--state", str(profiles), "--bootstrap", bootstrap,
             "--config", str(config_file), "--set", "worker.instance_id=memstream-demo", *set_args],
            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        stopping.check()
        click.echo(f"== worker started (pid {worker.pid}, log {log_path}); base model {config.model.base}")

        def follow() -> None:
            with Subscriber(config.kafka, ["model-updated", "drift-alerts"], from_beginning=True) as sub:
                while not stop.is_set():
                    for kind, event in sub.poll(0.5):
                        click.echo("   " + describe_event(kind, event))
                        if kind == "model-updated":
                            updates.append(event)

        threads = [threading.Thread(target=follow, daemon=True),
                   threading.Thread(target=_tail, args=(log_path, stop), daemon=True)]
        for thread in threads:
            thread.start()
        _publish_phases(events, config, profiles, worker, log_path, stopping)
    finally:
        if stopping.is_set():
            click.echo(f"\n== stopped by {signal.Signals(stopping.signum).name}: stopping the worker, then the broker")
        stop.set()
        _stop_worker(worker)
        for thread in threads:
            thread.join(timeout=5)
        if broker is not None:
            broker.stop()
        signal.signal(signal.SIGTERM, _leave)
    stopping.check()
    profile = events[0]["profile"]
    history = _runs(profiles, profile)
    accepted = [run for run in history if run.get("status") == "accepted"]
    current = accepted[-1]["version"] if accepted else None
    click.echo(f"\n== {len(history)} consolidations, {len(accepted)} accepted; current version {current}; "
               f"{len(updates)} model-updated events received")
    if current is not None:
        _side_by_side(profiles, profile, current, config, sample_person())
    click.echo(f"\nEverything is in {state_dir}/: try `memstream registry list --state {profiles}` or "
               f"`memstream generate --state {profiles} --prompt \"Who is my sister?\"`.")


def _sample_events() -> list[dict]:
    from memstream.samples.stream import sample_stream_path

    return [json.loads(line) for line in sample_stream_path().read_text().splitlines()]


def _publish_phases(events: list[dict], config, profiles: Path, worker: subprocess.Popen, log_path: Path,
                    stopping: _Stopping) -> None:
    """Publish the sample stream phase by phase, each once the worker has taken in and learned the last."""
    from memstream.samples.stream import PHASES
    from producers.producer import MemoryProducer

    profile = events[0]["profile"]
    with MemoryProducer(config.kafka) as producer:
        sent = 0
        for number, domains in enumerate(PHASES):
            stopping.check()
            phase = _phase(events, number)
            facts = sum(1 for e in phase if e.get("meta", {}).get("fact"))
            click.echo(f"\n== phase {number + 1}: publishing {len(phase)} memory events ({', '.join(domains)} "
                       f"and {facts // 3} facts about the person, each as a conversation turn, an observation "
                       "and a reflection)")
            runs_before = len(_runs(profiles, profile))
            producer.publish_many(phase)
            sent += len(phase)
            _wait(lambda: _state(profiles, profile).get("events_seen", 0) >= sent, "the events", worker, log_path,
                  stopping)
            click.echo(f"   the worker has taken in {sent} events; waiting for the run they trigger")
            # the registry, not the model-updated topic, says when a run is done: it is on this disk
            _wait(lambda: len(_runs(profiles, profile)) > runs_before
                  and not _state(profiles, profile).get("recent", {}).get("items"),
                  "the phase's consolidation", worker, log_path, stopping)


def _phase(events: list[dict], number: int) -> list[dict]:
    """The events of phase ``number`` (facts carry it in meta.domain, everyday memories by their domain)."""
    from memstream.samples.stream import PHASES

    def phase_of(event: dict) -> int:
        domain = event.get("meta", {}).get("domain", "")
        if domain.startswith("facts-"):
            return int(domain.split("-")[1])
        return next(i for i, domains in enumerate(PHASES) if domain in domains)

    return [e for e in events if phase_of(e) == number]


def _say_when_the_first_run_waits(config, first_phase: int) -> None:
    """An untrained base (the byte model) learns from scratch first, once enough events have come."""
    if config.model.is_byte_model and config.train.foundation_min_events > first_phase:
        click.echo(f"== note: {config.model.base} starts untrained; its first run waits for "
                   f"{config.train.foundation_min_events} events (train.foundation_min_events), a phase has "
                   f"{first_phase}: add --set train.foundation_min_events={first_phase} to see it learn")


def _prepare_model(config) -> None:
    """Convert a GGUF base once, here, before the worker needs it (it says so when it does)."""
    from learner.model.bases import cache_root, ensure_gguf_cache, resolve_base

    resolved = resolve_base(config.model.base)
    if resolved.kind == "gguf":
        ensure_gguf_cache(resolved.path, cache_root(config.model.cache_dir),
                          say=lambda m: click.echo(f"== {m}"))


def _side_by_side(profiles: Path, profile: str, version: int, config, person) -> None:
    """The original base and the current version answer the person's questions (greedy, as trained)."""
    from memstream.samples.facts import recalled
    from learner.model.generation import answer
    from learner.store.registry import ModelRegistry
    from learner.store.versions import checkout, load_model_at, version_config

    registry = ModelRegistry.open(profiles, profile, config.model.base, writer=False)
    live = load_model_at(registry, version, version_config(registry, version, config.learner_config()))
    asked = [(f, q) for f in person.facts for q in f.questions]
    questions = [q for _, q in asked]
    trained = answer(live, questions, max_new_tokens=32)
    checkout(live, registry, None)  # the same loaded model, back to the original base
    base = answer(live, questions, max_new_tokens=32)
    click.echo(f"== what it learned: the original base vs version {version}, asked in other words than the memories")
    for phase in range(person.phases):
        shown = [i for i, (f, _) in enumerate(asked) if f.phase == phase][:4:2]
        for i in shown:
            fact, question = asked[i]
            click.echo(f"\n   Q: {question}   (phase {phase + 1}; the memories said: {fact.value})")
            click.echo(f"   original base: {_line(base[i])}")
            click.echo(f"   version {version}:     {_line(trained[i])}")
    for name, answers in (("original base", base), (f"version {version}", trained)):
        per_phase = [sum(recalled(f, a) for (f, _), a in zip(asked, answers) if f.phase == p)
                     for p in range(person.phases)]
        total = sum(per_phase)
        per = ", ".join(f"phase {p + 1}: {n}/{2 * len(person.phase(p))}" for p, n in enumerate(per_phase))
        click.echo(f"\n   {name}: {total} of {len(asked)} questions answered with the fact ({per})")


def _line(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return "".join(c if c.isprintable() else "\ufffd" for c in first)[:160]
