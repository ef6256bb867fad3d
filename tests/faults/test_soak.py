"""Soak: a worker under a continuous stream with periodic consolidations; RSS and open files over time.

``MEMSTREAM_FAULT_SOAK_S`` sets the length (CI: 120 s; ``./dev soak``: 3600 s). The first 40% is
warm-up (reservoirs fill, the first versions are written); after it, memory may not grow by more
than ``max(40 MB, 10%)`` and open files by more than 8. ``MEMSTREAM_FAULT_REPORT`` names a JSON
file for the samples (docs/reliability.md quotes one).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

import pytest

from tests.faults.helpers import rss_mb

SOAK_S = float(os.environ.get("MEMSTREAM_FAULT_SOAK_S", "120"))
PROFILES = ["sa", "sb", "sc"]


def _sample(pid: int) -> tuple[float, int]:
    return rss_mb(pid), len(os.listdir(f"/proc/{pid}/fd"))


def _publisher(stack, stop: threading.Event, rate: float, sent: dict, errors: list) -> None:
    try:
        _publish(stack, stop, rate, sent)
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def _publish(stack, stop: threading.Event, rate: float, sent: dict) -> None:
    from memstream.samples.stream import make_sample_stream

    streams = {p: make_sample_stream(n_per_phase=(4000, 4000, 4000), seed=70 + i, profile=p)
               for i, p in enumerate(PROFILES)}
    with stack.producer() as producer:
        i = 0
        while not stop.is_set():
            # the sample stream repeats after 12,000 events per profile: own ids keep every event new
            batch = [{**streams[p][i % len(streams[p])], "id": f"{p}-{i}"} for p in PROFILES]
            producer.publish_many(batch)
            for p in PROFILES:
                sent[p] = sent.get(p, 0) + 1
            i += 1
            time.sleep(len(PROFILES) / rate)


@pytest.mark.slow
def test_memory_and_open_files_stay_flat_under_a_continuous_stream(stack):
    stack.overrides += ["replay.capacity=500"]
    worker = stack.start_worker()
    stop, sent, errors = threading.Event(), {}, []
    publisher = threading.Thread(target=_publisher, args=(stack, stop, 60.0, sent, errors), daemon=True)
    publisher.start()
    samples = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < SOAK_S:
            time.sleep(5)
            assert worker.poll() is None, "the worker died during the soak"
            assert not errors, f"publishing failed: {errors[0]!r}"
            rss, fds = _sample(worker.pid)
            counted = sum(stack.learner_state(p).get("events_seen", 0) for p in PROFILES)
            samples.append({"t": round(time.monotonic() - started, 1), "rss_mb": round(rss, 1), "fds": fds,
                            "published": sum(sent.values()), "counted": counted})
    finally:
        stop.set()
        publisher.join(30)
    versions = {p: json.loads((stack.state / p / "registry.json").read_text())["current_version"]
                for p in PROFILES if (stack.state / p / "registry.json").exists()}
    warm = [s for s in samples if s["t"] >= 0.4 * SOAK_S]
    at_warm = statistics.median(s["rss_mb"] for s in warm[:3])
    at_end = statistics.median(s["rss_mb"] for s in warm[-3:])
    growth = at_end - at_warm
    report = {"seconds": SOAK_S, "samples": samples, "rss_after_warmup_mb": at_warm, "rss_end_mb": at_end,
              "rss_growth_mb": growth, "fds_after_warmup": warm[0]["fds"], "fds_end": warm[-1]["fds"],
              "versions": versions, "published": sum(sent.values())}
    if os.environ.get("MEMSTREAM_FAULT_REPORT"):
        Path(os.environ["MEMSTREAM_FAULT_REPORT"]).write_text(json.dumps(report, indent=2))
    print(f"soak {SOAK_S:.0f} s: RSS {at_warm:.0f} -> {at_end:.0f} MB after warm-up, fds {warm[0]['fds']} -> "
          f"{warm[-1]['fds']}, published {report['published']}, versions {versions}")
    assert len(versions) == 3 and all(versions.values()) and sum(versions.values()) >= 4, \
        f"consolidations did not keep happening: {versions}"
    assert growth <= max(40.0, 0.10 * at_warm), f"RSS grew {growth:.0f} MB after warm-up: {samples}"
    assert warm[-1]["fds"] - warm[0]["fds"] <= 8, f"open files grew: {samples}"
