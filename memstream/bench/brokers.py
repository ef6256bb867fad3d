"""The embedded broker against Apache Kafka, in one run on one machine: what each costs memstream.

For each broker, started fresh in a temporary directory:

1. ``start_s``: from the process's start until it serves (topics can be created);
2. ``publish``: events/s of ``memstream publish``'s producer (every event acknowledged);
3. ``plain``: events/s of a plain kafka-python consumer reading them back (no decoding);
4. ``ingest``: events/s of a worker reading them (faust, decoding, the learner states), no training;
5. ``idle``: CPU of the broker alone, then of the broker and an idle worker, in percent of one core,
   over ``idle_s`` seconds with no events;
6. ``rss``: the broker's resident memory idle after start, and again after the stream went through it.

The event rates come from the same stream on both brokers; the worker's rate is taken from its own
clock (process start and group join not counted), as in ``memstream bench ingest``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from memstream.bench.idle import measure, resident_mib, wait_ready
from memstream.bench.ingest import IDLE_WORKER, plain_consumer_rate, publish_rate, sample_events, worker_ingest_rate

__all__ = ["ENGINES", "bench_brokers", "summary_rows"]

ENGINES = ("embedded", "kafka")


def _start(engine: str, data_dir: Path):
    from streams.broker import EmbeddedBroker, free_port
    from streams.kafka_server import ApacheKafka

    broker = (ApacheKafka if engine == "kafka" else EmbeddedBroker)(data_dir, port=free_port())
    started = time.monotonic()
    broker.start()
    return broker, time.monotonic() - started


def _idle_worker(kafka, state: Path, timeout_s: float = 180.0) -> subprocess.Popen:
    """A worker on its own topics and group, started and waited for until it holds its partitions."""
    from dataclasses import replace

    from streams.topics import ensure_topics

    prefix = f"idle{uuid.uuid4().hex[:8]}."
    ensure_topics(replace(kafka, topic_prefix=prefix))
    log_path = state.parent / "idle-worker.log"
    overrides = [f"kafka.bootstrap={kafka.bootstrap}", f"kafka.topic_prefix={prefix}", f"worker.group=g-{prefix}"]
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "memstream", "worker", "--state", str(state),
                                   *[a for o in overrides for a in ("--set", o)]],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(worker, log_path, timeout_s, "the idle worker")
    except RuntimeError:
        worker.kill()
        raise
    return worker


def bench_engine(engine: str, work: Path, events: list[dict], idle_s: float, settle_s: float = 5.0) -> dict[str, Any]:
    """Every measure of one broker (see the module's docstring)."""
    from contracts.topics import Topics
    from streams.settings import KafkaConfig
    from streams.topics import ensure_topics

    broker, start_s = _start(engine, work / engine / "broker")
    worker = None
    try:
        result: dict[str, Any] = {"start_s": round(start_s, 4)}  # a fast start is a few milliseconds
        time.sleep(settle_s)
        result["idle_broker_cpu_percent"] = measure(broker.process.pid, idle_s)["cpu_percent"]
        result["broker_rss_idle_mib"] = resident_mib(broker.process.pid)
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        kafka = KafkaConfig(bootstrap=broker.bootstrap, topic_prefix=prefix)
        ensure_topics(kafka)
        result["publish"] = round(publish_rate(kafka, events))
        result["plain"] = round(plain_consumer_rate(kafka, Topics(prefix).memory_events, len(events)))
        overrides = [f"kafka.bootstrap={kafka.bootstrap}", f"kafka.topic_prefix={prefix}", f"worker.group=g-{prefix}",
                     f"worker.instance_id={prefix}w"]
        ingest = worker_ingest_rate(overrides, work / engine / "ingest", len(events), IDLE_WORKER, timeout_s=900)
        result["ingest"] = round(ingest["rate"])
        result["broker_rss_after_mib"] = resident_mib(broker.process.pid)
        worker = _idle_worker(kafka, work / engine / "idle")
        time.sleep(settle_s)
        result["idle_broker_and_worker_cpu_percent"] = measure([broker.process.pid, worker.pid], idle_s)["cpu_percent"]
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
        broker.stop()
    return result


def bench_brokers(n: int = 20000, profiles: int = 6, idle_s: float = 30.0, engines: tuple[str, ...] = ENGINES,
                  say: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Both brokers, one after the other, on the same ``n`` events."""
    events = sample_events(n, profiles, seed=0)
    work = Path(tempfile.mkdtemp(prefix="memstream-brokers-"))
    results: dict[str, Any] = {"events": len(events), "profiles": profiles, "idle_s": idle_s}
    for engine in engines:
        say(f"== {engine}")
        results[engine] = bench_engine(engine, work, events, idle_s)
    return results


def summary_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per measure, one column per broker.

    >>> r = {"embedded": {"start_s": 0.5, "publish": 10, "plain": 20, "ingest": 5,
    ...      "idle_broker_cpu_percent": 0.1, "idle_broker_and_worker_cpu_percent": 1.5,
    ...      "broker_rss_idle_mib": 30.0, "broker_rss_after_mib": 40.0}}
    >>> summary_rows(r)[0], summary_rows(r)[3]
    (['start (s)', 0.5], ['events/s, ingest app (no training)', 5])
    """
    engines = [e for e in ENGINES if e in results]
    measures = [("start (s)", "start_s"), ("events/s, publish (acknowledged)", "publish"),
                ("events/s, plain consumer", "plain"), ("events/s, ingest app (no training)", "ingest"),
                ("idle CPU, broker alone (% of a core)", "idle_broker_cpu_percent"),
                ("idle CPU, broker + idle worker (% of a core)", "idle_broker_and_worker_cpu_percent"),
                ("broker memory idle (MiB resident)", "broker_rss_idle_mib"),
                ("broker memory after the stream (MiB resident)", "broker_rss_after_mib")]
    return [[label, *(results[e][key] for e in engines)] for label, key in measures]
