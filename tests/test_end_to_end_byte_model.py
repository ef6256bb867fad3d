"""The byte model's acceptance run: 800 everyday memories in three phases, through the real CLI.

It takes a few minutes on a 2-core CPU (marked slow; part of the default suite). The real chat
model's own end-to-end test is tests/test_real_model.py.
"""

import json

import pytest

from learner.config import load_config
from learner.model.losses import mean_loss
from contracts.events import MemoryEvent
from learner.online import OnlineLearner
from memstream.samples.stream import PHASES, make_sample_stream
from tests.conftest import memstream, write_jsonl

pytestmark = pytest.mark.slow

# The byte model with the training settings chosen for it (the defaults are the real chat model's:
# 5 epochs of batch 8 at lr 1.5e-3 with memory views and base rehearsal, see docs/benchmarks.md), with a
# foundation of 10 epochs (the default is 20) and LoRA runs of 2: enough for the versions, the alerts and
# the kept first phase checked below, in a shorter run
BYTE_SETTINGS = ["model.base=memstream-byte", "model.max_seq_len=192", "model.lora_r=16", "model.lora_alpha=32",
                 "train.epochs=2", "train.foundation_epochs=10", "train.batch_size=16", "train.lr=2e-3",
                 "replay.base_rehearsal=0", "train.views=0"]
BYTE_MODEL = [f"--set={s}" for s in BYTE_SETTINGS]
# events per phase, a few minutes apart (a version about every 180: a day), and a drift baseline that fits
# in the first phase, so that each switch meets a baseline of the phase before it
PHASE_SIZES = (300, 250, 250)
DRIFT = ["--set=drift.baseline_size=200"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("default")
    state = root / "state"
    stream = write_jsonl(root / "stream.jsonl", make_sample_stream(n_per_phase=PHASE_SIZES))
    out = memstream("learn", str(stream), "--state", str(state), "--json", *BYTE_MODEL, *DRIFT, timeout=1800)
    return state, json.loads(out.stdout)


def test_foundation_then_at_least_two_lora_versions(default_run):
    state, summary = default_run
    accepted = [c for c in summary["consolidations"] if c["accepted"]]
    assert accepted[0]["mode"] == "foundation" and accepted[0]["version"] == 1
    assert sum(c["mode"] == "lora" for c in accepted) >= 2
    assert summary["events"] == sum(PHASE_SIZES) and summary["invalid"] == 0
    listing = memstream("registry", "list", "--state", str(state)).stdout
    assert listing.count("accepted") == len(accepted)


def test_drift_alerts_follow_the_phase_switches(default_run):
    _, summary = default_run
    switches = [PHASE_SIZES[0], PHASE_SIZES[0] + PHASE_SIZES[1]]
    indices = [a["event_index"] for a in summary["drift_alerts"]]
    for switch in switches:
        assert any(switch <= i < switch + 150 for i in indices), (switch, indices)


def test_early_domains_are_not_forgotten(default_run):
    """Held-out text of the first phase's domains: the last version beats the foundation, or a gate refused."""
    state, summary = default_run
    held_out = [MemoryEvent.from_dict(e) for e in
                make_sample_stream(n_per_phase=(120,), seed=12345, phases=[PHASES[0]], profile="alice")]
    learner = OnlineLearner("alice", load_config(overrides=BYTE_SETTINGS, environ={}), state)
    losses = {}
    for version in (1, learner.registry.current_version):
        live = learner.model_at(version)
        examples = [live.encoder.encode(e) for e in held_out]
        losses[version] = mean_loss(live.model, examples, live.tokenizer.pad_id)
    final = learner.registry.current_version
    assert final > 1, "no version after the foundation was accepted"
    assert losses[final] < losses[1], losses  # replay + EWC: the first phase is kept, whatever the gate did
