"""Shared fixtures: a tiny model config (fast on CPU) and seeded sample streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner.config import load_config
from learner.sample_data import generate_stream, sample_stream_path

TINY = [
    "model.base=memstream-byte",
    "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.max_seq_len=64",
    "model.lora_r=4", "train.batch_size=16", "train.foundation_epochs=2", "train.epochs=1",
    "train.probe_size=16", "train.foundation_min_events=50", "ewc.fisher_samples=8", "scheduler.count=100", "scheduler.interval_s=1e12",
    "drift.window=60", "drift.baseline_size=120", "drift.n_bootstrap=50",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def tiny_config():
    return load_config(overrides=TINY, environ={})


@pytest.fixture(scope="session")
def sample_events() -> list[dict]:
    return [json.loads(line) for line in sample_stream_path().read_text().splitlines()]


@pytest.fixture
def small_stream() -> list[dict]:
    """360 events in three phases of two domains each."""
    return generate_stream(n_per_phase=(120, 120, 120), seed=3)


def run_detector(detector, stream) -> list[int]:
    """Feed ``stream`` to a drift detector; the 0-based positions where it fired."""
    fired = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            fired.append(i)
    return fired


def write_jsonl(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def memstream(*args: str, check: bool = True, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MEMSTREAM_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "memstream", *args], capture_output=True, text=True,
                            env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"memstream {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result
