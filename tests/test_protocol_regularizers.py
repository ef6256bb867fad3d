"""One check suite for regularizers (loss terms that protect what earlier versions learned),
parametrized over every implementation."""

import copy
import pickle

import pytest
import torch

from learner.training.ewc import EWC
from learner.types import Regularizer


def _anchored_ewc() -> EWC:
    fisher = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([[0.5, 0.0], [2.0, 1.0]])}
    anchor = {"a": torch.tensor([0.5, -1.0]), "b": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}
    return EWC(lam=10.0, gamma=0.9).updated(fisher, anchor)


REGULARIZERS = [
    pytest.param(lambda: EWC(lam=10.0), id="ewc-empty"),
    pytest.param(_anchored_ewc, id="ewc-anchored"),
]


def params(seed: int = 0) -> dict[str, torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.nn.Parameter(torch.randn(2, generator=g)), "b": torch.nn.Parameter(torch.randn(2, 2, generator=g))}


@pytest.mark.parametrize("make", REGULARIZERS)
def test_is_a_regularizer_with_a_non_negative_scalar_penalty(make):
    reg = make()
    value = reg.penalty(params())
    assert isinstance(reg, Regularizer) and value.shape == () and value.item() >= 0


@pytest.mark.parametrize("make", REGULARIZERS)
def test_inputs_unchanged(make):
    given = params()
    before = {k: v.detach().clone() for k, v in given.items()}
    make().penalty(given)
    assert all(torch.equal(before[k], given[k].detach()) for k in given)


@pytest.mark.parametrize("make", REGULARIZERS)
def test_same_inputs_same_penalty(make):
    assert torch.equal(make().penalty(params(3)), make().penalty(params(3)))


@pytest.mark.parametrize("make", REGULARIZERS)
def test_pickling_and_copying_keep_the_penalty(make):
    reg = make()
    expected = reg.penalty(params())
    for twin in (pickle.loads(pickle.dumps(reg)), copy.deepcopy(reg)):
        assert torch.equal(twin.penalty(params()), expected)


@pytest.mark.parametrize("make", REGULARIZERS)
def test_saved_state_restores_the_same_penalty(make):
    reg = make()
    again = EWC.from_state(reg.state_tensors(), reg.state_metadata())
    assert torch.allclose(again.penalty(params()), reg.penalty(params()))


def test_an_anchored_penalty_is_zero_at_the_anchor_and_pulls_back_towards_it():
    reg = _anchored_ewc()
    at_anchor = {"a": torch.nn.Parameter(torch.tensor([0.5, -1.0])),
                 "b": torch.nn.Parameter(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))}
    assert reg.penalty(at_anchor).item() == 0.0
    moved = params()
    reg.penalty(moved).backward()
    step = {k: (moved[k] - 0.1 * moved[k].grad).detach() for k in moved}
    assert reg.penalty(step).item() < reg.penalty({k: v.detach() for k, v in moved.items()}).item()


@pytest.mark.parametrize("make", REGULARIZERS)
def test_add_gradient_gives_the_penalty_and_its_gradient(make):
    reg = make()
    by_autograd, fused = params(5), params(5)
    for given in (by_autograd, fused):  # a task loss's gradient is there already
        for p in given.values():
            p.grad = torch.full_like(p, 0.25)
    expected = reg.penalty(by_autograd)
    if expected.requires_grad:
        expected.backward()
    value = reg.add_gradient(fused)
    assert torch.allclose(value, expected.detach()) and not value.requires_grad
    for name in fused:
        assert torch.allclose(fused[name].grad, by_autograd[name].grad), name
