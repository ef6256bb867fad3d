"""EWC: the penalty's pull follows the Fisher; per-example Fisher is not the squared batch gradient."""

import torch
from safetensors.torch import load, save

import pytest

from learner.model.adapted import AdaptedModel
from learner.config import ModelConfig
from learner.model.encoding import collate
from learner.model.losses import lm_loss_from_logits
from contracts.events import MemoryEvent
from learner.training.ewc import EWC, batch_gradient_squared, fisher_method, per_example_fisher


def test_penalty_pulls_high_fisher_parameters_back_harder():
    anchor = torch.zeros(2)
    ewc = EWC(lam=10.0).updated({"w": torch.tensor([10.0, 0.1])}, anchor={"w": anchor})
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))  # both moved away by the same amount
    optimizer = torch.optim.SGD([w], lr=0.05)
    for _ in range(50):
        optimizer.zero_grad()
        ewc.penalty({"w": w}).backward()
        optimizer.step()
    assert w[0].abs() < 0.1 * w[1].abs()  # the high-Fisher one went home, the low-Fisher one barely moved
    assert w[1] > 0.5


def test_penalty_scale_does_not_depend_on_parameter_count():
    small = EWC(lam=4.0).updated({"w": torch.full((10,), 3.0)}, anchor={"w": torch.zeros(10)})
    large = EWC(lam=4.0).updated({"w": torch.full((10_000,), 0.01)}, anchor={"w": torch.zeros(10_000)})
    assert torch.isclose(small.penalty({"w": torch.ones(10)}), large.penalty({"w": torch.ones(10_000)}))


def test_online_accumulation_decays_the_old_fisher():
    first = EWC(lam=1.0, gamma=0.5).updated({"w": torch.tensor([4.0])}, anchor={"w": torch.tensor([0.0])})
    ewc = first.updated({"w": torch.tensor([1.0])}, anchor={"w": torch.tensor([2.0])})
    assert ewc.fisher["w"].item() == 3.0 and ewc.anchor["w"].item() == 2.0 and ewc.updates == 2
    assert first.fisher["w"].item() == 4.0 and first.updates == 1  # the state a run started from is untouched


def test_state_round_trips_through_safetensors():
    ewc = EWC(lam=3.0, gamma=0.7).updated({"a.b": torch.rand(3, 2)}, anchor={"a.b": torch.rand(3, 2)})
    back = EWC.from_state(load(save(ewc.state_tensors(), metadata=ewc.state_metadata())), ewc.state_metadata())
    p = {"a.b": torch.rand(3, 2)}
    assert torch.equal(back.penalty(p), ewc.penalty(p)) and back.gamma == 0.7


def _lora_model_and_examples():
    torch.manual_seed(0)
    live = AdaptedModel(ModelConfig(base="memstream-byte", d_model=32, n_layers=1, n_heads=2, d_ff=64, lora_r=4))
    live.start_lora()
    with torch.no_grad():  # B = 0 at init would make A's gradient zero: move off it
        for name, p in live.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    texts = ["the cat sat on the mat", "buy milk and eggs", "stir the soup slowly", "zebra quartz jump"]
    events = [MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": 0, "kind": "n", "text": t}) for t in texts]
    examples = [live.encoder.encode(e) for e in events]
    width = max(len(e["input_ids"]) for e in examples)
    padded = [{k: v[0] for k, v in collate([e], 0, width).items()} for e in examples]
    return live, padded


def test_per_example_fisher_differs_from_squared_batch_gradient():
    live, examples = _lora_model_and_examples()
    fisher = per_example_fisher(live.model, examples, lm_loss_from_logits)
    squared_batch = batch_gradient_squared(live.model, examples, lm_loss_from_logits)
    assert set(fisher) == set(squared_batch) and all("lora_" in k for k in fisher)
    f = torch.cat([v.flatten() for v in fisher.values()])
    g = torch.cat([v.flatten() for v in squared_batch.values()])
    assert f.sum() > 0 and not torch.allclose(f, g, rtol=0.05)
    assert f.sum() > g.sum()  # Jensen: the mean of squares is at least the square of the mean


def test_vmap_fisher_equals_the_per_example_loop():
    """Both methods run for real (vmap is never replaced by the loop behind the caller's back)."""
    live, examples = _lora_model_and_examples()
    assert fisher_method(live.model, examples[0], lm_loss_from_logits) == "vmap"
    fast = per_example_fisher(live.model, examples, lm_loss_from_logits, chunk_size=3, method="vmap")
    slow = per_example_fisher(live.model, examples, lm_loss_from_logits, method="loop")
    assert set(fast) == set(slow) and all(v.abs().sum() > 0 for v in fast.values())
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-4, atol=1e-9)


def test_vmap_that_cannot_trace_raises_instead_of_falling_back():
    def untraceable(forward, batch):  # data-dependent control flow: vmap cannot batch it
        loss = lm_loss_from_logits(forward, batch)
        return loss * 2 if loss.item() > 0 else loss

    live, examples = _lora_model_and_examples()
    with pytest.raises(RuntimeError, match="vmap"):
        per_example_fisher(live.model, examples, untraceable, method="vmap")
    assert fisher_method(live.model, examples[0], untraceable) == "loop"  # the choice is explicit, and said


@pytest.mark.parametrize("kind", ["byte", "llama"])
def test_batched_fisher_equals_one_backward_pass_per_example(tmp_path, kind):
    """One batched backward pass gives every example's own gradient: the same Fisher as the loop,
    on examples of different lengths batched together (padding changes nothing)."""
    from learner.training.ewc import fisher_after_run

    live, padded = _lora_model_and_examples()
    if kind == "llama":
        from tests.test_hf_models import save_local_model

        live = AdaptedModel(ModelConfig(base=str(save_local_model(tmp_path / "llama", "llama")), lora_r=4))
        live.start_lora()
        with torch.no_grad():
            for name, p in live.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    texts = ["the cat sat on the mat", "milk", "stir the soup slowly until it thickens", "zebra quartz jump",
             "a", "eggs and bread for the week ahead"]
    events = [MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": 0, "kind": "n", "text": t}) for t in texts]
    examples = [live.encoder.encode(e) for e in events]
    batched, method = fisher_after_run(live, examples, len(examples), seed=0)
    one_by_one = per_example_fisher(live.model, [{k: v for k, v in ex.items()} for ex in examples],
                                    lm_loss_from_logits, method="loop")
    assert method == "batched" and set(batched) == set(one_by_one) and all("lora_" in k for k in batched)
    assert all(v.abs().sum() > 0 for v in batched.values())
    for k in batched:
        torch.testing.assert_close(batched[k], one_by_one[k], rtol=1e-4, atol=1e-9)
