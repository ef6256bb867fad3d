"""bf16 on a CPU: where "auto" picks it, and that the real model learns and predicts in it as in float32.

The suite pins ``MEMSTREAM_CPU_BF16=0`` (tests/conftest.py); the tests here ask for bf16 by name, so
they run the same on a CPU with bf16 matrix instructions (fast) and on one without (emulated, slower).
"""

from __future__ import annotations

import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from contracts.events import MemoryEvent
from learner.config import load_config
from learner.model.adapted import AdaptedModel
from learner.model.encoding import collate
from learner.model.loading import cpu_computes_bf16, resolve_dtype
from learner.model.losses import lm_loss
from learner.online import OnlineLearner
from memstream.samples.stream import sample_stream

CPU = torch.device("cpu")
FEW_STEPS = ["train.epochs=2", "train.batch_size=4", "train.max_steps=4", "train.probe_size=4",
             "train.base_probe_size=4", "ewc.fisher_samples=4", "scheduler.count=100000", "drift.enabled=false"]


@pytest.mark.parametrize("forced, expected", [("1", torch.bfloat16), ("0", torch.float32)])
def test_auto_picks_bf16_only_on_a_cpu_that_multiplies_it_natively(monkeypatch, forced, expected):
    monkeypatch.setenv("MEMSTREAM_CPU_BF16", forced)
    assert cpu_computes_bf16() is (forced == "1")
    assert resolve_dtype("auto", CPU) == expected
    assert resolve_dtype("auto", CPU, trains_all_weights=True) == torch.float32  # the byte model's foundation
    assert resolve_dtype("float32", CPU) == torch.float32 and resolve_dtype("bfloat16", CPU) == torch.bfloat16


@pytest.fixture(scope="module")
def bases():
    """The default model loaded twice: float32 and bf16 weights."""
    return {name: AdaptedModel(load_config(overrides=FEW_STEPS + [f"model.dtype={name}"], environ={}).model)
            for name in ("float32", "bfloat16")}


def _next_token_logp(live: AdaptedModel, texts: list[str]) -> torch.Tensor:
    ids = [live.tokenizer.encode(t) for t in texts]
    width = max(map(len, ids))
    batch = torch.tensor([row + [live.tokenizer.pad_id] * (width - len(row)) for row in ids])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    with torch.no_grad(), live.autocast()():
        logits = live.model(input_ids=batch, attention_mask=mask).logits.float()
    return torch.log_softmax(logits, -1)[mask.bool()]


def test_a_bf16_base_on_the_cpu_predicts_the_next_token_as_the_float32_base(bases):
    full, half = bases["float32"], bases["bfloat16"]
    assert {p.dtype for p in half.base.model.parameters()} == {torch.bfloat16}
    assert half.base.model.config._attn_implementation == "eager"  # SDPA's CPU backward is slower in bf16
    assert full.base.model.config._attn_implementation == "sdpa"
    texts = [e.get("response") or e.get("text") for e in sample_stream()[:12]]
    reference, approx = _next_token_logp(full, texts), _next_token_logp(half, texts)
    top = reference.argmax(-1)
    agreement = (approx.argmax(-1) == top).float().mean().item()
    drift = (approx.gather(1, top[:, None]) - reference.gather(1, top[:, None])).abs().mean().item()
    assert agreement >= 0.9 and drift < 0.1, (agreement, drift)


def _notes(count: int) -> list[dict]:
    """Short notes (about ten tokens each): on a CPU without bf16 instructions every bf16 product is emulated,
    slowly, and a step's cost grows with its tokens."""
    return [{"v": 1, "profile": "ann", "ts": 1.0 + i, "kind": "note", "id": f"ann-{i}",
             "text": f"Note {i}: my sister is called Odile."} for i in range(count)]


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """One short consolidation on the real model with bf16 base weights: two steps of two notes, no base
    rehearsal, no views and no Fisher."""
    state = tmp_path_factory.mktemp("bf16")
    short = FEW_STEPS + ["model.dtype=bfloat16", "train.max_steps=2", "train.batch_size=2", "replay.base_rehearsal=0",
                         "ewc.enabled=false", "train.views=0"]
    learner = OnlineLearner("ann", load_config(overrides=short, environ={}), state)
    for event in _notes(4):
        learner.learn_one(event)
    yield learner, learner.consolidate("manual"), state
    learner.close()


def test_a_bf16_base_on_the_cpu_trains_float32_adapters_that_learn(taught):
    learner, result, state = taught
    assert result.accepted, result.reason
    assert result.metrics["loss_new_after"] < result.metrics["loss_new_before"]
    assert {p.dtype for p in learner.live.model.parameters() if p.requires_grad} == {torch.float32}
    adapter = load_file(state / "ann" / "versions" / "v0001" / "adapter_model.safetensors")
    assert {t.dtype for t in adapter.values()} == {torch.float32}


def test_a_bf16_base_is_merged_with_its_adapter_in_float32_for_export(taught):
    live = taught[0].live
    layer = live.peft_model.get_base_model().model.layers[0].mlp.down_proj
    update = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * layer.scaling["default"]
    merged = live.merged()
    weight = merged.model.layers[0].mlp.down_proj.weight
    assert weight.dtype == torch.float32 and live.peft_model is not None  # the live model keeps its adapter
    assert torch.allclose(weight - layer.base_layer.weight.float(), update, atol=1e-6)


def _loss_and_grads(live: AdaptedModel, context) -> tuple[torch.Tensor, list[torch.Tensor]]:
    batch = collate([live.encoder.encode(MemoryEvent.from_dict(e)) for e in _notes(2)], live.tokenizer.pad_id)
    params = [p for p in live.model.parameters() if p.requires_grad]
    with context():
        loss = lm_loss(live.model, batch)
    grads = torch.autograd.grad(loss, params)
    return loss.detach(), list(grads)


def test_adapters_under_bf16_autocast_take_bf16_inputs_with_the_same_loss_and_gradients(taught):
    live = taught[0].live
    adapted = [m for m in live.model.modules() if isinstance(m, BaseTunerLayer)]
    with live.autocast()():
        assert not any(m.cast_input_dtype_enabled for m in adapted)  # no copy to float32 and back
    assert all(m.cast_input_dtype_enabled for m in adapted)  # outside autocast the float32 adapters need it
    loss, grads = _loss_and_grads(live, live.autocast())
    cast_loss, cast_grads = _loss_and_grads(live, lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert torch.equal(loss, cast_loss)
    assert all(torch.equal(g, c) for g, c in zip(grads, cast_grads))
