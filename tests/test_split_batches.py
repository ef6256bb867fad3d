"""A step's batch computed in parts of close lengths: the same loss, rows and gradients as the batch
padded whole, the same run, and less padding computed."""

from __future__ import annotations

import pytest
import torch

from learner.config import load_config
from learner.model.adapted import AdaptedModel
from learner.model.config import ModelConfig
from learner.model.encoding import collate
from learner.model.losses import lm_loss_by_parts, lm_loss_by_row
from learner.online import OnlineLearner
from learner.training.batching import close_length_parts
from tests.conftest import TINY


@pytest.fixture(scope="module")
def live() -> AdaptedModel:
    return AdaptedModel(ModelConfig(base="memstream-byte", d_model=32, n_layers=2, n_heads=2, d_ff=64))


def _examples(lengths: list[int]) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(5)
    examples = []
    for length in lengths:
        ids = torch.randint(3, 200, (length,), generator=generator)
        labels = ids.clone()
        labels[: length // 3] = -100  # a prompt: not trained on
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def _loss_rows_grads(model, batches):
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(True)
    loss, rows = lm_loss_by_parts(model, batches) if len(batches) > 1 else lm_loss_by_row(model, batches[0])
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    return loss.detach(), rows, grads


def test_a_batch_in_parts_has_the_whole_batchs_loss_rows_and_gradients(live):
    lengths = [12, 60, 14, 13, 58, 11, 15, 40]
    examples = _examples(lengths)
    parts = close_length_parts(lengths, cost=8)
    assert len(parts) > 1 and sorted(p for part in parts for p in part) == list(range(len(lengths)))
    pad = live.tokenizer.pad_id
    whole, whole_rows, whole_grads = _loss_rows_grads(live.model, [collate(examples, pad)])
    split, split_rows, split_grads = _loss_rows_grads(live.model, [collate([examples[p] for p in part], pad)
                                                                   for part in parts])
    assert split.item() == pytest.approx(whole.item(), rel=1e-5)
    in_order = [p for part in parts for p in part]
    assert split_rows.tolist() == pytest.approx([whole_rows[p].item() for p in in_order], rel=1e-5)
    for a, b in zip(whole_grads, split_grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_parts_cut_off_the_long_tail_only_where_the_saving_pays_for_the_call():
    assert close_length_parts([20, 21, 22, 200], cost=10) == [[0, 1, 2], [3]]
    assert close_length_parts([20, 21, 22, 30], cost=30) == [[0, 1, 2, 3]]  # 3 × 8 padded tokens < one call
    assert close_length_parts([20, 21, 22, 30], cost=5) == [[0, 1, 2], [3]]
    assert close_length_parts([20, 21, 22, 200], cost=0) == [[0, 1, 2, 3]]


def test_a_run_in_parts_learns_what_it_learns_padded_whole_and_computes_less_padding(tmp_path, small_stream):
    def lora_run(state, split_cost):
        config = load_config(overrides=TINY + ["train.epochs=2", f"train.split_cost={split_cost}"], environ={})
        steps = OnlineLearner("alice", config, state).learn_many(small_stream[:200])
        return [s.consolidation for s in steps if s.consolidation and s.consolidation.mode == "lora"][0]

    split, whole = lora_run(tmp_path / "split", 8), lora_run(tmp_path / "whole", 0)
    assert split.steps == whole.steps and split.accepted == whole.accepted
    assert split.metrics["tokens_real"] == whole.metrics["tokens_real"]
    print(f"padding share: {split.metrics['padding_share']:.3f} in parts, {whole.metrics['padding_share']:.3f} whole")
    assert split.metrics["padding_share"] < 0.8 * whole.metrics["padding_share"]
    assert split.metrics["loss_new_after"] == pytest.approx(whole.metrics["loss_new_after"], rel=1e-3)
