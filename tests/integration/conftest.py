"""Integration fixtures: real Kafka-protocol brokers over TCP, real worker processes.

Every test that talks to a broker runs once per broker kind, ``[embedded]`` (noida-db from PyPI) and
``[kafka]`` (Apache Kafka, one KRaft node from the jars ``./dev kafka-jars`` collects), each broker
started once per test process. Which kinds a test runs on: ``@pytest.mark.brokers("kafka")`` (what
needs rebalances between live members, which the embedded broker never completes), else both for
tests/integration and the embedded one for tests/faults, where a fault test that is about the broker
marks itself ``brokers("embedded", "kafka")``.

``MEMSTREAM_TEST_BOOTSTRAP=HOST:PORT`` runs them all on that broker instead, of the kind
``MEMSTREAM_TEST_BROKER`` names (``embedded`` unless told ``kafka``). Without Apache Kafka's jars its
tests are skipped, unless ``MEMSTREAM_TEST_REQUIRE_KAFKA=1`` (``./dev test``) makes that an error.
Every test gets its own topic prefix and consumer group, so tests never see each other's events.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import TINY

BROKER_KINDS = ("embedded", "kafka")
GIVEN_BOOTSTRAP = os.environ.get("MEMSTREAM_TEST_BOOTSTRAP")
GIVEN_KIND = os.environ.get("MEMSTREAM_TEST_BROKER", "embedded")

FAST_WORKER = [
    "worker.flush_interval_s=0.5", "worker.session_timeout_s=6", "kafka.partitions=3",
    "kafka.request_timeout_s=10",
    # a trainer starts at a worker's first run: most workers here never train, or are killed first, and a
    # warm start's imports would cost each of them seconds of CPU (tests/integration/test_pipeline.py warms)
    "worker.warm_trainers=false",
]


def broker_kinds_for(item_path: Path, marker) -> tuple[str, ...]:
    """The broker kinds one test runs on (see the module's docstring)."""
    wanted = tuple(marker.args) if marker else \
        BROKER_KINDS if "integration" in item_path.parts else ("embedded",)
    if GIVEN_BOOTSTRAP:
        return (GIVEN_KIND,) if GIVEN_KIND in wanted else ()
    return wanted


@pytest.fixture
def broker_kind(request) -> str:
    return request.param


class Brokers:
    """The brokers of this test process, one of each kind, started when first asked for."""

    def __init__(self, root: Path):
        self.root = root
        self.running: dict = {}

    def bootstrap(self, kind: str) -> str:
        if GIVEN_BOOTSTRAP:
            return GIVEN_BOOTSTRAP
        if kind not in self.running:
            from streams.broker import free_port

            if kind == "kafka":
                require_kafka()
            self.running[kind] = new_broker(kind, self.root / kind, free_port()).start()
        return self.running[kind].bootstrap

    def stop(self) -> None:
        for broker in self.running.values():
            broker.stop()


@pytest.fixture(scope="session")
def brokers(tmp_path_factory):
    started = Brokers(tmp_path_factory.mktemp("brokers"))
    yield started
    started.stop()


@pytest.fixture
def bootstrap(brokers, broker_kind) -> str:
    return brokers.bootstrap(broker_kind)


def require_kafka() -> None:
    """Skip (or, under ``MEMSTREAM_TEST_REQUIRE_KAFKA=1``, fail) when Apache Kafka cannot start here."""
    from streams.broker import BrokerStartError
    from streams.kafka_server import kafka_libs

    try:
        kafka_libs()
    except BrokerStartError as exc:
        if os.environ.get("MEMSTREAM_TEST_REQUIRE_KAFKA") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def new_broker(kind: str, data_dir: Path, port: int):
    """A broker of ``kind`` (not started): the embedded one or Apache Kafka, one KRaft node."""
    from streams.broker import EmbeddedBroker
    from streams.kafka_server import ApacheKafka

    return (ApacheKafka if kind == "kafka" else EmbeddedBroker)(data_dir, port=port)


class Stack:
    """One test's slice of the system: a topic prefix, a group, a state dir, worker processes."""

    def __init__(self, bootstrap: str, root: Path, extra: list[str] | None = None):
        self.bootstrap = bootstrap
        self.prefix = f"t{uuid.uuid4().hex[:10]}."
        self.state = root / "state"
        self.root = root
        self.overrides = TINY + FAST_WORKER + [f"kafka.topic_prefix={self.prefix}",
                                               f"worker.group=g-{self.prefix}", f"kafka.bootstrap={bootstrap}"] \
            + (extra or [])
        self.workers: list[subprocess.Popen] = []
        from learner.config import load_config
        from streams.settings import StreamConfig
        from streams.topics import ensure_topics

        self.config = load_config(overrides=self.overrides, environ={}, root=StreamConfig)
        ensure_topics(self.config.kafka)

    def set_args(self) -> list[str]:
        return [arg for o in self.overrides for arg in ("--set", o)]

    def start_worker(self, name: str = "w0", instance: str | None = None, settings: tuple[str, ...] = ()) \
            -> subprocess.Popen:
        """A worker process; ``instance`` is its static group membership id (default: one per name
        stem, so "w1" and "w2" are the same member restarted, "a" and "b" are two members); ``settings``
        are this worker's own overrides on top of the stack's."""
        log = open(self.root / f"{name}.log", "ab")
        instance = instance or name.rstrip("0123456789") or name
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("MEMSTREAM_DEBUG", None)
        proc = subprocess.Popen([sys.executable, "-m", "memstream", "worker", "--state", str(self.state),
                                 *self.set_args(), *(arg for o in settings for arg in ("--set", o)),
                                 "--set", f"worker.instance_id={self.prefix}{instance}"],
                                stdout=log, stderr=log, env=env, start_new_session=True)
        proc.log_path = self.root / f"{name}.log"
        self.workers.append(proc)
        return proc

    def producer(self):
        from producers.producer import MemoryProducer

        return MemoryProducer(self.config.kafka)

    def raw_producer(self):
        from kafka import KafkaProducer

        return KafkaProducer(**self.config.kafka.kafka_python_options(), acks="all")

    def subscriber(self, *kinds: str):
        from consumers.subscriber import Subscriber

        return Subscriber(self.config.kafka, list(kinds), from_beginning=True)

    def learner_state(self, profile: str) -> dict:
        path = self.state / profile / "learner_state.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def wait_for(self, condition, timeout: float, what: str, interval: float = 0.5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(interval)
        logs = "\n".join(f"--- {p.log_path.name}\n{p.log_path.read_text(errors='replace')[-3000:]}"
                         for p in self.workers)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs}")

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def stack(bootstrap, tmp_path):
    s = Stack(bootstrap, tmp_path)
    yield s
    s.stop_all()
