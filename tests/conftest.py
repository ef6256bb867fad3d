"""Shared fixtures: a tiny model config (fast on CPU) and seeded sample streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from learner.config import load_config
from memstream.samples.stream import make_sample_stream

# The suite's numbers must not depend on the CPU it runs on: float32 weights wherever "auto" would pick
# bf16 for a CPU with bf16 matrix instructions (tests of that path ask for bf16 by name).
os.environ.setdefault("MEMSTREAM_CPU_BF16", "0")

TINY = [
    "model.base=memstream-byte",
    "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.d_ff=64", "model.max_seq_len=64",
    "model.lora_r=4", "train.batch_size=16", "train.foundation_epochs=2", "train.epochs=1",
    "train.probe_size=16", "train.foundation_min_events=50", "ewc.fisher_samples=8", "scheduler.count=100",
    "scheduler.interval_s=1e12",
    "drift.window=60", "drift.baseline_size=120", "drift.n_bootstrap=50",
    "scheduler.after_drift=0",  # a drift run as soon as min_examples allow (the after-drift wait has its own test)
    "train.views=0",  # the memories as they are: views multiply a run's steps (tests/test_views.py trains on them)
]


# The longest files, longest first: with tests in parallel (``./dev test``: a file per process, in
# collection order) they start at once and the short ones fill in around them.
LONGEST_FIRST = [
    "tests/test_real_model.py", "tests/test_end_to_end_byte_model.py", "tests/faults/test_crashes.py",
    "tests/integration/test_pipeline.py", "tests/faults/test_soak.py", "tests/integration/test_faults.py",
    "tests/integration/test_scale_out.py", "tests/faults/test_bad_input.py", "tests/faults/test_broker_outage.py",
    "tests/faults/test_disk.py",
]


def pytest_collection_modifyitems(config, items):
    root = Path(str(config.rootpath))

    def rank(item) -> int:
        path = Path(str(item.path))
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
        return LONGEST_FIRST.index(relative) if relative in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: within a file, and among the rest, the collection order stays


def pytest_generate_tests(metafunc):
    """A test that talks to a broker runs once per broker kind it is meant for."""
    if "broker_kind" not in metafunc.fixturenames:
        return
    from tests.integration.conftest import broker_kinds_for

    kinds = broker_kinds_for(Path(str(metafunc.definition.path)), metafunc.definition.get_closest_marker("brokers"))
    if kinds:
        metafunc.parametrize("broker_kind", kinds, indirect=True)
    else:
        metafunc.parametrize("broker_kind", [pytest.param("none", marks=pytest.mark.skip(
            reason="not meant for the broker MEMSTREAM_TEST_BOOTSTRAP names"))], indirect=True)


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def tiny_config():
    return load_config(overrides=TINY, environ={})


@pytest.fixture
def small_stream() -> list[dict]:
    """360 events in three phases of two domains each."""
    return make_sample_stream(n_per_phase=(120, 120, 120), seed=3)


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


def run_cli(*args: str, check: bool = True, env: dict | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    """Run the CLI's real entry point (``memstream.cli.main``: the same parsing, one-line errors and exit codes)
    in this process, where a subprocess would prove nothing more: it saves a Python start and torch's import."""
    import contextlib
    import io

    from memstream.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    saved_stdin = sys.stdin
    os.environ.update(env or {})
    debug = os.environ.pop("MEMSTREAM_DEBUG", None)
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # a command that sets its own exit code
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdin = saved_stdin
        for key, value in saved_env.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        if debug is not None:
            os.environ["MEMSTREAM_DEBUG"] = debug
    result = subprocess.CompletedProcess(["memstream", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"memstream {' '.join(args)} failed ({code}):\n{result.stderr}")
    return result


def memstream(*args: str, check: bool = True, env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (for what needs a process of its own: signals, kill -9, locks)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MEMSTREAM_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "memstream", *args], capture_output=True, text=True,
                            env=full_env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"memstream {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result
