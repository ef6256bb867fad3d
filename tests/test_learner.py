"""OnlineLearner with a real (tiny) torch model and peft, real files."""

import json
import random

import pytest
import torch

from learner.config import load_config
from learner.online import OnlineLearner
from learner.store.storage import CorruptStateError, sha256_file
from tests.conftest import TINY


def test_foundation_then_lora_versions_and_only_the_adapter_changes(tmp_path, tiny_config, small_stream):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    steps = learner.learn_many(small_stream[:200])
    reports = [s.consolidation for s in steps if s.consolidation]
    assert [r.mode for r in reports] == ["foundation", "lora"]
    assert all(r.accepted for r in reports), [r.reason for r in reports]
    assert all(sha256_file(tmp_path / r.adapter_path) == r.sha256 for r in reports)  # relative to the state dir
    base_before = {k: v.clone() for k, v in learner.live.base_state().items()}
    adapter_before = learner.live.adapter_state()
    learner.learn_many(small_stream[200:300])
    current = learner.registry.current_version
    assert current >= 3
    base_after = learner.live.base_state()
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)  # frozen base
    adapter_after = learner.live.adapter_state()
    assert any(not torch.equal(adapter_before[k], adapter_after[k]) for k in adapter_after)
    assert learner.ewc.active and learner.registry.entry(current)["base_version"] == 1


def test_restart_continues_exactly_where_the_saved_state_left_off(tmp_path, tiny_config, small_stream):
    straight = OnlineLearner("alice", tiny_config, tmp_path / "a")
    straight.learn_many(small_stream)
    first = OnlineLearner("alice", tiny_config, tmp_path / "b")
    first.learn_many(small_stream[:150])
    first.save_state()
    del first
    resumed = OnlineLearner.open(tmp_path / "b", "alice", tiny_config)
    assert resumed.events_seen == 150
    resumed.learn_many(small_stream[150:])
    assert resumed.events_seen == straight.events_seen == len(small_stream)
    assert [e.id for e in resumed.reservoir.items] == [e.id for e in straight.reservoir.items]
    assert [e.id for e in resumed.recent.items] == [e.id for e in straight.recent.items]
    assert resumed.registry.current_version == straight.registry.current_version
    a, b = straight.registry.history, resumed.registry.history
    assert [e["samples_trained"] for e in a] == [e["samples_trained"] for e in b]
    for ea, eb in zip(a, b):
        assert ea["metrics"]["loss_probe_after"] == pytest.approx(eb["metrics"]["loss_probe_after"], rel=1e-4)


def test_saved_outputs_survive_reload(tmp_path, tiny_config, small_stream):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    learner.learn_many(small_stream[:250])
    ids = torch.tensor([[1, 50, 60, 70, 80]])
    with torch.no_grad():
        expected = learner.model(input_ids=ids).logits
        reloaded = OnlineLearner.open(tmp_path, "alice", tiny_config).model(input_ids=ids).logits
    torch.testing.assert_close(reloaded, expected)


def test_a_version_that_forgets_is_rejected_and_its_events_get_one_more_run(tmp_path, small_stream):
    """Policy: a refused run's new events stay new for one more run, with more replay and half the learning
    rate; refused again, they leave the recent buffer (they stay in the reservoir for replay)."""
    cfg = load_config(overrides=TINY + ["train.lr=3.0", "train.grad_clip=0", "train.gate_tolerance=0.0",
                                        "train.gate_max_forgetting=0.0"], environ={})
    learner = OnlineLearner("alice", cfg, tmp_path)
    steps = learner.learn_many(small_stream[:200])
    runs = [s for s in steps if s.consolidation]
    first, second, third = [s.consolidation for s in runs[:3]]
    assert first.accepted and first.mode == "foundation"
    assert second.status in ("rejected", "aborted") and second.attempt == 1, second.reason
    assert "forgetting" in second.reason or "non-finite" in second.reason
    assert third.attempt == 2 and third.status in ("rejected", "aborted"), third.reason
    assert third.samples_new >= second.samples_new  # the same events again, with those that arrived since
    ratio = lambda r: r.samples_replay / (r.samples_new + r.samples_replay)
    assert ratio(third) > ratio(second)  # train.retry_replay_ratio (0.6) instead of 0.4, as far as the buffer allows
    entries = learner.registry.history
    assert [e["attempt"] for e in entries[:3]] == [1, 1, 2] and entries[2]["lr_scale"] == 0.5
    assert learner.registry.current_version == 1
    # after the second refusal the events are let go: only what arrived since waits
    assert len(learner.recent) == 200 - runs[2].events_seen


def test_a_refused_requested_run_gets_its_second_attempt_at_once(tmp_path, small_stream):
    """A run started by a request (no count pending) that the gate refuses is retried right away, under
    the same trigger, not left to wait for the next trigger."""
    cfg = load_config(overrides=TINY + ["scheduler.count=100000", "scheduler.interval_s=1e12"], environ={})
    learner = OnlineLearner("alice", cfg, tmp_path, auto_consolidate=False)
    learner.learn_many(small_stream[:100])
    assert learner.consolidate().accepted  # the foundation
    learner.learn_many(small_stream[100:160])
    learner.config = load_config(overrides=TINY + ["train.lr=3.0", "train.grad_clip=0", "train.gate_tolerance=0",
                                                   "train.gate_max_forgetting=0", "scheduler.count=100000",
                                                   "scheduler.interval_s=1e12"], environ={})
    runs = learner.consolidate_runs("manual")
    assert [(r.attempt, r.trigger) for r in runs] == [(1, "manual"), (2, "manual")], [r.reason for r in runs]
    assert not runs[0].accepted and runs[1].samples_new == runs[0].samples_new
    assert [e["attempt"] for e in learner.registry.history[-2:]] == [1, 2]
    assert len(learner.recent) == 0 and learner.scheduler.retrying is None  # two attempts, then let go
    assert learner.consolidate_runs("manual") == []  # nothing new: no run


def test_non_finite_loss_aborts_cleanly(tmp_path, tiny_config, small_stream, monkeypatch):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    learner.learn_many(small_stream[:100])
    weights = learner.live.base_state()
    import learner.training.loop as consolidation

    real = consolidation.lm_loss_by_parts

    def poisoned(model, parts):
        loss, rows = real(model, parts)
        return loss * float("nan"), rows

    monkeypatch.setattr(consolidation, "lm_loss_by_parts", poisoned)
    report = learner.consolidate("manual") or learner.learn_many(small_stream[100:200])[-1].consolidation
    assert not report.accepted and "non-finite" in report.reason
    assert learner.registry.current_version == 1
    assert learner.registry.history[-1]["status"] == "aborted"
    after = learner.live.base_state()
    assert all(torch.equal(weights[k], after[k]) for k in weights)


def test_drift_triggers_an_early_consolidation_with_an_alert(tmp_path, tiny_config, small_stream):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    steps = learner.learn_many(small_stream)
    alerts = [s for s in steps if s.drift]
    assert alerts and alerts[0].events_seen > 120
    assert alerts[0].drift["top_features"] and "consolidate early" in alerts[0].drift["action"]
    assert any(s.consolidation and s.consolidation.trigger == "drift" for s in steps)


def test_corrupt_current_version_is_refused_on_load(tmp_path, tiny_config, small_stream):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    learner.learn_many(small_stream[:100])
    weights = learner.registry.version_dir(1) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptStateError, match="model.safetensors fails its sha256 check"):
        OnlineLearner.open(tmp_path, "alice", tiny_config)


def test_version_snapshot_wins_over_an_older_live_state(tmp_path, tiny_config, small_stream):
    """A crash after the version was committed but before the live state was written loses nothing."""
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    learner.learn_many(small_stream[:99])
    learner.save_state()
    stale = (tmp_path / "alice" / "learner_state.json").read_bytes()
    learner.learn_one(small_stream[99])  # trips the count trigger: version 1 + live state
    (tmp_path / "alice" / "learner_state.json").write_bytes(stale)  # as if the last write never happened
    resumed = OnlineLearner.open(tmp_path, "alice", tiny_config)
    assert resumed.events_seen == 100 and resumed.registry.current_version == 1 and len(resumed.recent) == 0


def test_changed_architecture_is_refused_with_a_clear_error(tmp_path, tiny_config, small_stream):
    OnlineLearner("alice", tiny_config, tmp_path).learn_many(small_stream[:100])
    other = load_config(overrides=TINY + ["model.d_model=64"], environ={})
    with pytest.raises(ValueError, match="model.d_model = 64 but version 1"):
        OnlineLearner.open(tmp_path, "alice", other)


def test_events_of_another_profile_are_refused(tmp_path, tiny_config, small_stream):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    with pytest.raises(ValueError, match="profile 'bob'"):
        learner.learn_one({**small_stream[0], "profile": "bob"})
    assert learner.events_seen == 0


def test_state_file_is_plain_json(tmp_path, tiny_config, small_stream):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    learner.learn_many(small_stream[:10])
    state = json.loads(learner.save_state().read_text())
    assert state["events_seen"] == 10 and state["reservoir"]["seen"] == 10


def test_loss_detector_is_an_optional_second_signal(tmp_path, small_stream):
    """ADWIN on per-event loss fires when the text turns into something the model never saw."""
    cfg = load_config(overrides=TINY + ["drift.enabled=false", "drift.loss_detector=adwin",
                                        "scheduler.count=1000", "train.foundation_epochs=20"], environ={})
    learner = OnlineLearner("alice", cfg, tmp_path)
    learner.learn_many(small_stream[:120])
    learner.consolidate("manual")  # a foundation on the first phase: now loss means something
    rng = random.Random(0)
    codes = [{"v": 1, "profile": "alice", "ts": 2e9 + i, "kind": "observation",
              "text": " ".join(f"{rng.randrange(16**6):06X}-{rng.randrange(999)}" for _ in range(6))}
             for i in range(150)]
    steps = learner.learn_many(small_stream[120:220] + codes)
    alerts = [s for s in steps if s.drift]
    assert alerts and alerts[0].drift["detector"] == "adwin-loss"
    assert alerts[0].events_seen > 220  # after the switch, not before
    assert alerts[0].drift["top_features"][0]["direction"] == "rose"
    state = json.loads(learner.save_state().read_text())
    assert state["loss_monitor"]["kind"] == "scalar-drift"


def test_rollback_and_reset_from_python_move_model_and_ewc(tmp_path, tiny_config, small_stream):
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    learner.learn_many(small_stream[:300])
    assert learner.registry.current_version >= 3
    ids = torch.tensor([[1, 60, 70, 80]])
    with torch.no_grad():
        at_two = learner.model_at(2).model(input_ids=ids).logits
        learner.rollback(2)
        torch.testing.assert_close(learner.model(input_ids=ids).logits, at_two)
    assert learner.ewc.updates == 1  # the EWC state saved with version 2
    learner.reset()
    assert learner.next_mode == "foundation" and not learner.ewc.active
    report = learner.consolidate("manual")
    assert report.mode == "foundation" and report.parent_version is None
    assert learner.events_seen == 300


def test_surprise_replay_prefers_what_the_model_finds_hard(tmp_path, small_stream):
    cfg = load_config(overrides=TINY + ["replay.strategy=surprise", "replay.capacity=60", "drift.enabled=false",
                                        "scheduler.count=1000", "train.foundation_epochs=20"], environ={})
    learner = OnlineLearner("alice", cfg, tmp_path)
    learner.learn_many(small_stream[:120])
    learner.consolidate("manual")
    rng = random.Random(1)
    codes = [{"v": 1, "profile": "alice", "ts": 2e9 + i, "kind": "observation", "id": f"code-{i}",
              "text": " ".join(f"{rng.randrange(16**6):06X}" for _ in range(8))} for i in range(120)]
    mixed = [x for pair in zip(small_stream[120:240], codes) for x in pair]
    learner.learn_many(mixed)
    share = sum(e.id.startswith("code-") for e in learner.reservoir.items) / len(learner.reservoir)
    uniform_share = 120 / learner.events_seen  # what Algorithm R would keep on average
    print(f"hard events: {share:.2f} of the buffer (uniform: {uniform_share:.2f})")
    assert share > 1.5 * uniform_share
    state = json.loads(learner.save_state().read_text())
    assert state["reservoir"]["kind"] == "weighted-reservoir"
    other = load_config(overrides=TINY + ["drift.enabled=false"], environ={})
    learner.close()
    with pytest.raises(ValueError, match="keep the strategy a profile started with"):
        OnlineLearner.open(tmp_path, "alice", other)


def test_a_run_reports_its_tokens_padding_flops_and_where_its_time_went(tmp_path, tiny_config):
    rng = random.Random(4)
    words = "tea garden bus sister river piano".split()
    # notes of 2 to 60 bytes, shuffled: random batches of 16 would be mostly padding
    texts = [" ".join(rng.choice(words) for _ in range(rng.choice([2, 3, 9, 10]))) for _ in range(300)]
    events = [{"v": 1, "profile": "alice", "ts": 1000.0 + i, "kind": "note", "text": t} for i, t in enumerate(texts)]
    learner = OnlineLearner("alice", tiny_config, tmp_path)
    steps = learner.learn_many(events)
    report = [s.consolidation for s in steps if s.consolidation and s.consolidation.mode == "lora"][0]
    m = report.metrics
    assert report.accepted, report.reason
    assert 0 < m["tokens_real"] <= m["tokens_padded"]
    assert m["padding_share"] == pytest.approx(1 - m["tokens_real"] / m["tokens_padded"], abs=1e-4)
    assert m["padding_share"] <= 0.10  # batches of close lengths
    assert m["train_flops"] > 4 * m["tokens_padded"] * 1000  # thousands of weights per token at least
    parts = ("prepare_s", "evaluate_s", "steps_s", "fisher_s")
    assert all(m[p] >= 0 for p in parts) and m["steps_s"] > 0
    assert sum(m[p] for p in parts) <= report.duration_s + 0.01


def _first_lora_run(stream, state, *settings: str):
    """The first LoRA run of a learner with the tiny settings and ``settings``, over ``stream``."""
    config = load_config(overrides=TINY + list(settings), environ={})
    steps = OnlineLearner("alice", config, state).learn_many(stream)
    return [s.consolidation for s in steps if s.consolidation and s.consolidation.mode == "lora"][0]


def test_learned_examples_of_new_memories_rest_and_the_run_takes_fewer_steps(tmp_path, small_stream):
    every_epoch = _first_lora_run(small_stream[:200], tmp_path / "a", "train.epochs=4", "train.rest_below=0.0")
    # every example of a new memory is learned after its first visit
    rested = _first_lora_run(small_stream[:200], tmp_path / "b", "train.epochs=4", "train.rest_below=1e9")
    assert "rested_examples" not in every_epoch.metrics
    assert rested.metrics["rested_examples"] == rested.samples_new > 0
    # epochs 2 to 4 hold the replayed examples alone
    assert rested.steps < every_epoch.steps
    assert rested.metrics["tokens_real"] < every_epoch.metrics["tokens_real"]


def test_a_run_cut_short_by_max_steps_says_how_many_epochs_it_ran(tmp_path, small_stream):
    whole = _first_lora_run(small_stream[:200], tmp_path / "a", "train.epochs=2", "train.max_steps=0")
    cut = _first_lora_run(small_stream[:200], tmp_path / "b", "train.epochs=2", "train.max_steps=3")
    assert "capped" not in whole.metrics
    assert cut.steps == 3 < whole.steps
    per_epoch = whole.steps // 2
    assert cut.metrics["capped"] == (f"{per_epoch} steps an epoch × 2 epochs capped at train.max_steps = 3: "
                                     f"{3 / per_epoch:.1f} epochs")


def test_end_scale_shrinks_what_the_trained_adapter_adds_and_nothing_else(tmp_path, small_stream):
    def trained(state, *settings: str):
        config = load_config(overrides=TINY + list(settings) + ["train.gate_base_tolerance=1e9",
                                                                "train.gate_tolerance=1e9",
                                                                "train.gate_max_forgetting=1e9"], environ={})
        learner = OnlineLearner("alice", config, state)
        steps = learner.learn_many(small_stream[:200])
        assert [s.consolidation.status for s in steps if s.consolidation] == ["accepted", "accepted"]
        return learner, learner.live.adapter_state()

    _, whole = trained(tmp_path / "a", "train.end_scale=1")
    learner, half = trained(tmp_path / "b", "train.end_scale=0.5")
    assert whole.keys() == half.keys() and any("lora_B" in name for name in whole)
    for name, tensor in whole.items():
        expected = tensor * 0.5 if "lora_B" in name else tensor
        assert torch.allclose(half[name], expected, atol=1e-6), name
    assert any(tensor.abs().max() > 0 for name, tensor in whole.items() if "lora_B" in name)
    # a first LoRA run's parent adds nothing: shrinking only the run's change shrinks the whole adapter
    _, half_of_run = trained(tmp_path / "c", "train.end_scale=0.5", "train.end_scale_of=run")
    assert all(torch.equal(half_of_run[name], tensor) for name, tensor in half.items())
    # towards a parent: each B moves that share of the way back to the parent's, and A stays
    live = learner.live
    parent = live.trainable_state(full=False)
    with torch.no_grad():
        for weight in live.trainable_parameters(full=False).values():
            weight.add_(1.0)
    live.scale_adapter(0.25, towards=parent)
    for name, weight in live.trainable_parameters(full=False).items():
        assert torch.allclose(weight, parent[name] + (0.25 if "lora_B" in name else 1.0), atol=1e-6), name
