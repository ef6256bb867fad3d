"""Packed training batches: the same losses and the same run as padded ones, with no padding computed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from learner.config import load_config
from learner.model.adapted import AdaptedModel
from learner.model.config import ModelConfig
from learner.model.encoding import collate
from learner.model.losses import lm_loss_by_row
from learner.model.packing import pack, packs_sequences
from learner.online import OnlineLearner
from tests.conftest import TINY


@pytest.fixture(scope="module")
def live() -> AdaptedModel:
    return AdaptedModel(ModelConfig(base="memstream-byte", d_model=32, n_layers=2, n_heads=2, d_ff=64))


def _examples(n: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(3)
    examples = []
    for length in torch.randint(4, 40, (n,), generator=generator).tolist():
        ids = torch.randint(3, 200, (length,), generator=generator)
        labels = ids.clone()
        labels[: length // 3] = -100  # a prompt: not trained on
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def test_a_packed_batch_has_the_padded_batchs_loss_gradients_and_per_example_losses(live):
    model = live.model
    examples = _examples(6)
    results = []
    for batch in (collate(examples, live.tokenizer.pad_id), pack(examples, live.tokenizer.pad_id, max_tokens=64)):
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(True)
        loss, rows = lm_loss_by_row(model, batch)
        loss.backward()
        results.append((loss.detach(), rows, [p.grad.clone() for p in model.parameters()]))
    for p in model.parameters():
        p.requires_grad_(False)
    (padded, padded_rows, padded_grads), (packed, packed_rows, packed_grads) = results
    assert packed.item() == pytest.approx(padded.item(), rel=1e-5)
    assert packed_rows.tolist() == pytest.approx(padded_rows.tolist(), rel=1e-5)
    assert len(packed_rows) == len(examples) and len(set(packed_rows.tolist())) == len(examples)
    for a, b in zip(padded_grads, packed_grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_rows_of_a_packed_batch_hold_whole_sequences_within_the_token_bound(live):
    examples = _examples(6)
    batch = pack(examples, live.tokenizer.pad_id, max_tokens=64)
    lengths = [len(ex["input_ids"]) for ex in examples]
    assert batch["input_ids"].shape[0] > 1 and batch["input_ids"].shape[1] <= max(64, max(lengths))
    assert int(batch["tokens_real"]) == sum(lengths)
    assert int((batch["position_ids"] == 0).sum()) == len(examples)  # every sequence starts at position 0
    assert int((batch["labels"] != -100).sum()) == sum(int((ex["labels"][1:] != -100).sum()) for ex in examples)


class _PositionsIgnored(nn.Module):
    """A causal LM that attends over a whole row whatever the positions say."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)


def test_a_model_that_would_attend_across_packed_sequences_is_not_packed(live):
    assert packs_sequences(live.base.model, live.tokenizer.pad_id)
    assert not packs_sequences(_PositionsIgnored(live.base.model), live.tokenizer.pad_id)


def test_a_run_on_packed_batches_learns_what_it_learns_padded_and_computes_no_padding(tmp_path, small_stream, monkeypatch):
    config = load_config(overrides=TINY + ["train.epochs=2", "train.pack=true", "train.split_cost=0"], environ={})

    def lora_run(state):
        steps = OnlineLearner("alice", config, state).learn_many(small_stream[:200])
        return [s.consolidation for s in steps if s.consolidation and s.consolidation.mode == "lora"][0]

    packed = lora_run(tmp_path / "packed")
    monkeypatch.setattr(AdaptedModel, "packs", property(lambda self: False))
    padded = lora_run(tmp_path / "padded")
    assert packed.steps == padded.steps and packed.accepted == padded.accepted
    assert packed.metrics["tokens_real"] == padded.metrics["tokens_real"]
    assert packed.metrics["padding_share"] < 0.02 < padded.metrics["padding_share"]
    assert packed.metrics["loss_new_after"] == pytest.approx(padded.metrics["loss_new_after"], rel=1e-3)
