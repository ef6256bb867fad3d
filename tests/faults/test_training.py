"""Training faults: NaN/inf losses, exploding gradients, a probe set that gets worse. The run is rejected with
a reason, the current version and its weights stay, and the ModelUpdated event says so."""

from __future__ import annotations

import json

import pytest
import torch

from learner.config import load_config
from contracts.events import MemoryEvent
from learner.online import OnlineLearner
from memstream.samples.stream import make_sample_stream
from contracts.codec import EventCodec, model_updated_event
from tests.conftest import TINY
from tests.faults.helpers import set_faults


def _learner(tmp_path, *overrides: str) -> OnlineLearner:
    cfg = load_config(overrides=TINY + ["scheduler.count=1000000"] + list(overrides), environ={})
    return OnlineLearner("tia", cfg, tmp_path / "state")


def _feed(learner: OnlineLearner, events: list[dict]) -> None:
    for e in events:
        learner.learn_one(MemoryEvent.from_dict(e))


def _adapter(learner: OnlineLearner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.live.trainable_state(False).items()} if learner.live.has_adapter \
        else {k: v.clone() for k, v in learner.live.base_state().items()}


def _rejected_and_published(learner: OnlineLearner, report, reason_part: str | tuple[str, ...], weights_before) -> None:
    """The run was refused for one of ``reason_part``'s reasons, the weights stayed, and the event says why."""
    parts = (reason_part,) if isinstance(reason_part, str) else reason_part
    assert report.accepted is False and any(part in report.reason for part in parts), report.reason
    assert learner.registry.current_version == 1
    after = _adapter(learner)
    assert all(torch.equal(weights_before[k], after[k]) for k in weights_before), "weights moved"
    event = EventCodec().decode_map(EventCodec.encode(model_updated_event({**report.report(), "action": "train"})))
    assert event["accepted"] is False and event["reason"] == report.reason


@pytest.fixture
def founded(tmp_path):
    events = make_sample_stream(n_per_phase=(120, 120), seed=40, profile="tia")
    learner = _learner(tmp_path)
    _feed(learner, events[:120])
    assert learner.consolidate("manual").accepted  # version 1: the foundation
    learner.close()
    return tmp_path, events


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_loss_aborts_the_run_and_keeps_the_version(founded, monkeypatch, value):
    tmp_path, events = founded
    faults = tmp_path / "faults.json"
    set_faults(faults, {"train.step": {"action": "nan", "after": 2}})
    monkeypatch.setenv("MEMSTREAM_FAULTS", str(faults))
    learner = _learner(tmp_path).load_state()
    if value == "inf":  # an overflow rather than a NaN: same rule, the loss must be finite
        set_faults(faults, {})
        learner.config.train.lr = float("inf")
    _feed(learner, events[120:])
    learner.live.start_lora()
    before = _adapter(learner)
    report = learner.consolidate("manual")
    _rejected_and_published(learner, report, "non-finite", before)
    history = json.loads((tmp_path / "state" / "tia" / "registry.json").read_text())["training_history"]
    assert history[-1]["status"] == "aborted"


def test_exploding_gradients_are_clipped_or_the_run_is_rejected(founded):
    tmp_path, events = founded
    learner = _learner(tmp_path, "train.lr=50", "train.grad_clip=0").load_state()
    _feed(learner, events[120:])
    learner.live.start_lora()
    before = _adapter(learner)
    report = learner.consolidate("manual")
    assert report.accepted is False
    # diverged (a non-finite loss aborts it) or learned nothing the gate would keep
    _rejected_and_published(learner, report, ("non-finite", "forgetting: ", "were not learned", "base text loss"),
                            before)


def test_a_run_that_makes_the_probe_worse_is_rejected_by_the_gate(founded):
    tmp_path, events = founded
    learner = _learner(tmp_path, "train.lr=0.05", "train.epochs=4", "train.replay_ratio=0",
                       "drift.enabled=false").load_state()  # no drift-triggered run first: this one is judged
    noise = [{"v": 1, "profile": "tia", "ts": 10_000.0 + i, "kind": "note",
              "text": "".join(chr(0x4E00 + (i * 7919 + j * 104729) % 20000) for j in range(40))} for i in range(120)]
    _feed(learner, noise)
    learner.live.start_lora()
    before = _adapter(learner)
    report = learner.consolidate("manual")
    _rejected_and_published(learner, report, "forgetting: probe loss", before)
