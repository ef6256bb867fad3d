"""Tampering (a file changed after it was written is refused, the previous model stays), names and paths that
try to leave the state directory, and a check that nothing in the project unpickles outside data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import subprocess
import sys

from consumers.hot_reload import AdapterHotReloader
from learner.config import load_config
from contracts.events import InvalidEvent, MemoryEvent, validate_profile
from learner.online import OnlineLearner
from learner.store.registry import ModelRegistry
from memstream.samples.stream import make_sample_stream
from learner.store.storage import CorruptStateError
from contracts.codec import DecodeError, EventCodec, model_updated_event
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
def _memstream(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memstream", *args], capture_output=True, text=True, timeout=120)


BAD_NAMES = ["../etc", "..", ".", "/abs", "a/b", "a\\b", "a\x00b", "x" * 65, "", "ok\n", "é"]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """A profile with a foundation (v1) and a LoRA version (v2), and the ModelUpdated maps of both."""
    root = tmp_path_factory.mktemp("tamper")
    cfg = load_config(overrides=TINY + ["scheduler.count=1000000"], environ={})
    learner = OnlineLearner("tam", cfg, root / "state", auto_consolidate=False)
    updates = []
    events = make_sample_stream(n_per_phase=(120, 120), seed=50, profile="tam")
    for part in (events[:120], events[120:]):
        for e in part:
            learner.learn_one(MemoryEvent.from_dict(e))
        report = learner.consolidate("manual")
        assert report.accepted
        updates.append(model_updated_event({**report.report(), "action": "train"}))
    learner.close()
    return root / "state", cfg, updates


def _flip_last_byte(path: Path) -> bytes:
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    return original


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "ewc.safetensors", "learner_state.json",
                                  "manifest.json"])
def test_a_checkpoint_file_changed_on_disk_is_refused_on_load(two_versions, name):
    state, cfg, _updates = two_versions
    path = state / "tam" / "versions" / "v0002" / name
    original = _flip_last_byte(path)
    try:
        with pytest.raises(CorruptStateError, match="version 2: .*(sha256|checksum)"):
            OnlineLearner("tam", cfg, state).load_state()
        result = _memstream("registry", "show", "2", "--state", str(state), "--profile", "tam")
        assert result.returncode == 2
        assert "version 2" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    finally:
        path.write_bytes(original)
    OnlineLearner("tam", cfg, state).load_state().close()  # restored: trusted again


def test_the_hot_reloader_keeps_the_previous_adapter_when_the_new_one_was_changed(two_versions):
    state, cfg, (first, second) = two_versions
    reloader = AdapterHotReloader(state, "tam", cfg)
    assert reloader.handle(first) and reloader.version == 1
    original = _flip_last_byte(state / second["adapter_path"])
    try:
        assert not reloader.handle(second)
        assert reloader.version == 1 and reloader.model is not None
        assert "sha256" in reloader.refused[-1][1]
    finally:
        (state / second["adapter_path"]).write_bytes(original)
    assert reloader.handle(second) and reloader.version == 2


@pytest.mark.parametrize("path", ["/etc/passwd", "../../../../etc/passwd", "{state}/../outside.safetensors"])
def test_the_hot_reloader_refuses_an_adapter_path_outside_the_profile(two_versions, path):
    state, cfg, (_first, second) = two_versions
    reloader = AdapterHotReloader(state, "tam", cfg)
    assert not reloader.handle({**second, "adapter_path": path.format(state=state)})
    assert "outside the profile's state directory" in reloader.refused[-1][1]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_profile_names_that_could_escape_the_state_directory_are_refused_everywhere(tmp_path, name):
    with pytest.raises(InvalidEvent, match="profile"):
        validate_profile(name)
    event = {"v": 1, "profile": name, "ts": 1.0, "kind": "note", "text": "hello there"}
    with pytest.raises(DecodeError, match="profile"):
        EventCodec().decode_memory(EventCodec.encode(event))
    with pytest.raises(InvalidEvent):
        ModelRegistry.open(tmp_path, name, "base")
    with pytest.raises(InvalidEvent):
        OnlineLearner(name, load_config(overrides=TINY, environ={}), tmp_path)
    if name in ("../etc", "/abs", "x" * 65):  # the CLI path too (a process each: a few suffice)
        result = _memstream("registry", "list", "--state", str(tmp_path), "--profile", name)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be created for a refused name"


UNSAFE = [
    (re.compile(r"^\s*(import|from)\s+(pickle|cPickle|dill|cloudpickle|joblib|shelve|marshal)\b", re.M), "pickle-like"),
    (re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load without weights_only=True"),
    (re.compile(r"yaml\.load\((?![^)]*SafeLoader)"), "yaml.load without SafeLoader"),
    (re.compile(r"(?<![.\w])(eval|exec)\("), "eval/exec"),
    (re.compile(r"pickle\.loads?\("), "pickle.load"),
]


def test_nothing_in_the_project_unpickles_or_evaluates_outside_data():
    found = []
    for package in ("learner", "streams", "producers", "consumers", "memstream"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            for pattern, what in UNSAFE:
                for match in pattern.finditer(text):
                    found.append(f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}: {what}")
    assert not found, "\n".join(found)
