"""Ingest throughput through a real broker, against baselines measured in the same run.

1. ``plain``: a kafka-python consumer reads every message of the topic (no decoding, no learning).
2. ``ingest_idle``: a worker process reads the same messages through faust, decodes, validates,
   gates and learns each one, with no consolidation running (triggers set out of reach).
3. ``ingest_busy``: the same, on a second copy of the stream, while consolidations compute
   back to back (a low count trigger, one run at a time).

Rates are events / (last message handled - first message handled), taken from the worker's own
clock, so process start-up and group joins are not counted. The ratios are what to compare
across machines: ``ingest_idle / plain`` (target ≥ 0.7) and ``ingest_busy / ingest_idle``
(target ≥ 0.5).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from memstream.samples.stream import make_sample_stream

__all__ = ["IDLE_WORKER", "bench_ingest", "plain_consumer_rate", "publish_rate", "sample_events", "worker_ingest_rate"]

IDLE_WORKER = ["scheduler.count=1000000000", "scheduler.interval_s=1e15", "drift.enabled=false"]  # never trains


def sample_events(n: int, profiles: int, seed: int) -> list[dict]:
    per = max(1, n // profiles)
    out = []
    for i in range(profiles):
        out += make_sample_stream(n_per_phase=(per,), seed=seed + i, profile=f"bench{i}")
    return out[:n]


def publish_rate(kafka, events: list[dict]) -> float:
    """Publish ``events`` (each acknowledged); returns the events per second."""
    from producers.producer import MemoryProducer

    with MemoryProducer(kafka) as producer:
        started = time.perf_counter()
        for i in range(0, len(events), 2000):
            producer.publish_many(events[i:i + 2000])
        return len(events) / (time.perf_counter() - started)


def plain_consumer_rate(kafka, topic: str, n: int) -> float:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka.kafka_python_options(), enable_auto_commit=False,
                             max_partition_fetch_bytes=4 * 1024 * 1024)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    seen, first, last = 0, None, None
    deadline = time.monotonic() + 300
    while seen < n and time.monotonic() < deadline:
        batches = consumer.poll(timeout_ms=0)
        if not batches:
            time.sleep(0.01)
            continue
        now = time.perf_counter()
        first = first or now
        seen += sum(len(r) for r in batches.values())
        last = time.perf_counter()
    consumer.close()
    return seen / max(last - first, 1e-9) if first else 0.0


def worker_ingest_rate(kafka_overrides: list[str], state: Path, n: int, extra: list[str], timeout_s: float,
                 before_measuring=None) -> dict:
    """Run a worker until it has taken ``n`` events; ``before_measuring(log_path)`` runs first (it
    publishes the measured events once the worker is in the wanted condition)."""
    cmd = [sys.executable, "-m", "memstream", "worker", "--state", str(state),
           *[a for o in kafka_overrides + extra for a in ("--set", o)]]
    log_path = state.parent / f"{state.name}.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        warmup = before_measuring(log_path) if before_measuring else 0
        while time.monotonic() < deadline:
            seen = 0
            for path in state.glob("*/learner_state.json"):
                try:
                    data = json.loads(path.read_text())
                    seen += data["events_seen"] + data.get("duplicates", 0)
                except (OSError, ValueError, KeyError):
                    pass
            if seen >= n + warmup:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    stats_files = sorted((state / "_worker").glob("stats-*.json"))
    if not stats_files:
        raise RuntimeError(f"the worker left no stats (log: {state.parent / (state.name + '.log')})")
    stats = json.loads(stats_files[-1].read_text())
    # the measured window: from the first progress mark after the warm-up to the last one
    marks = [(c, t) for c, t in stats["progress"] if c > warmup]
    if len(marks) >= 2:
        (c0, t0), (c1, t1) = marks[0], marks[-1]
    else:
        c0, t0, c1, t1 = 0, stats["first_message_at"] or 0, stats["counts"].get("messages", 0), \
            stats["last_message_at"] or 0
    span = t1 - t0
    return {"events": c1 - c0, "seconds": round(span, 3), "rate": (c1 - c0) / span if span > 0 else 0.0,
            "runs": stats.get("runs", {})}


def bench_ingest(kafka, work_dir: Path, n: int = 20000, profiles: int = 6, seed: int = 0) -> dict[str, Any]:
    """Measure the three rates on ``n`` events; ``kafka`` is a KafkaConfig (its prefix is replaced)."""
    from dataclasses import replace

    from contracts.topics import Topics
    from streams.topics import ensure_topics

    events = sample_events(n, profiles, seed)
    n = len(events)
    warmup_events = make_sample_stream(n_per_phase=(300,), seed=seed + 99, profile="warmup")
    results: dict[str, Any] = {"events": n, "profiles": profiles}
    for label, extra in (("ingest_idle", IDLE_WORKER),
                         ("ingest_busy", ["scheduler.count=200", "scheduler.interval_s=1e15", "drift.enabled=false",
                                          "train.foundation_min_events=100", "train.foundation_epochs=200"])):
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        cfg = replace(kafka, topic_prefix=prefix)
        ensure_topics(cfg)
        topic = Topics(prefix).memory_events

        def publish_when_ready(log_path: Path, cfg=cfg, label=label) -> int:
            if label == "ingest_idle":
                publish_rate(cfg, events)
                return 0
            # a long foundation run of a warm-up profile computes while the measured events flow
            publish_rate(cfg, warmup_events)
            deadline = time.monotonic() + 300
            # its first progress line: the run process has loaded the model and is taking steps
            while "] step " not in log_path.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.2)
            publish_rate(cfg, events)
            return len(warmup_events)

        overrides = [f"kafka.bootstrap={cfg.bootstrap}", f"kafka.topic_prefix={prefix}",
                     f"worker.group=g-{prefix}", f"worker.instance_id={prefix}w", "worker.session_timeout_s=6"]
        results[label] = worker_ingest_rate(overrides, work_dir / label, n, extra, timeout_s=900,
                                      before_measuring=publish_when_ready)
        if label == "ingest_idle":
            results["plain"] = {"rate": plain_consumer_rate(cfg, topic, n)}
    plain, idle, busy = results["plain"]["rate"], results["ingest_idle"]["rate"], results["ingest_busy"]["rate"]
    results["ratio_idle_vs_plain"] = idle / plain if plain else 0.0
    results["ratio_busy_vs_idle"] = busy / idle if idle else 0.0
    return results
