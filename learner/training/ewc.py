"""Elastic Weight Consolidation as a loss term, on the trainable (LoRA) parameters.

Fisher
    The diagonal empirical Fisher is the **mean of per-example squared gradients** of the
    per-example loss, ``F_i = (1/N) Σ_n (∂ℓ_n/∂θ_i)²`` — not the square of the batch
    gradient, which cancels opposing examples. It is computed *after* a run (with LoRA's
    default ``B = 0`` the gradient of ``A`` is zero before training) and accumulated
    online across versions: ``F ← γ·F + F_new``; the anchor ``θ*`` is the parameters of
    the last accepted version.

Normalisation
    So that λ means the same for a 50k-parameter adapter and a 50M one, the penalty
    uses ``F̃ = F / mean(F)`` (mean 1 over all trainable parameters) and averages over
    parameters::

        penalty = λ/2 · (1/P) · Σ_i F̃_i (θ_i − θ*_i)²

    That is λ/2·Σ F·(θ−θ*)² with F rescaled to sum 1. A Fisher-weighted RMS drift of
    ``δ`` then costs ``λ·δ²/2`` nats of loss, whatever P.

Examples
--------
>>> import torch
>>> ewc = EWC(lam=2.0)
>>> w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
>>> after = ewc.updated({"w": torch.tensor([3.0, 1.0])}, anchor={"w": torch.tensor([0.0, 0.0])})
>>> after.penalty({"w": w})  # F̃ = [1.5, 0.5]; 2/2 · (1.5 + 0.5) / 2
tensor(1., grad_fn=<DivBackward0>)
>>> ewc.updates, after.updates  # the state it started from is left as it was
(0, 1)
"""

from __future__ import annotations

import json
import random
import warnings
from typing import Callable, Iterable

import torch
from torch import nn

from learner.model.encoding import collate
from learner.model.losses import evaluating, lm_loss_from_logits
from learner.training.config import EWCConfig
from learner.training.per_example import linear_weights, squared_gradient_sums
from learner.types import Regularizer

__all__ = ["EWC", "batch_gradient_squared", "fisher_after_run", "fisher_method", "per_example_fisher"]


class EWC(Regularizer):
    """Online EWC penalty. ``fisher`` and ``anchor`` map parameter names to tensors.

    Parameters
    ----------
    lam
        Strength λ of the penalty.
    gamma
        Decay of the accumulated Fisher before a new one is added (1 = plain sum).
    """

    def __init__(self, lam: float = EWCConfig.lam, gamma: float = EWCConfig.gamma):
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam!r}")
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        self.lam = lam
        self.gamma = gamma
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}
        self.updates = 0
        self._weights: dict[str, torch.Tensor] = {}
        self._count = 0
        self._fused: tuple | None = None  # √F̃ and θ* laid out for add_gradient

    @property
    def active(self) -> bool:
        return bool(self.fisher) and self.lam > 0

    def updated(self, fisher_new: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> "EWC":
        """A new state with ``F ← γ·F + F_new`` and the anchor at ``anchor`` (the accepted parameters).

        ``self`` is left as it was: a version that is never committed leaves no trace in the state
        the next run starts from."""
        merged = {}
        for name, value in fisher_new.items():
            value = value.detach().float()
            old = self.fisher.get(name)
            merged[name] = value if old is None else self.gamma * old.to(value.device) + value
        out = EWC(self.lam, self.gamma)
        out.fisher = merged
        out.anchor = {name: anchor[name].detach().clone().float() for name in merged}
        out.updates = self.updates + 1
        out._normalise()
        return out

    def add_gradient(self, named_parameters: dict[str, torch.Tensor]) -> torch.Tensor:
        """Add ``λ/n · F̃ ⊙ (θ − θ*)``, the gradient of :meth:`penalty`, to each parameter's ``.grad`` and
        return the penalty's value: the same numbers as ``penalty(...).backward()``, in a few passes over
        every weight at once (``torch._foreach_*``, as torch's optimizers do) instead of an autograd graph
        of four operations per adapted matrix.

        >>> ewc = EWC(lam=2.0).updated({"w": torch.tensor([3.0, 1.0])}, {"w": torch.zeros(2)})
        >>> w = torch.tensor([1.0, 1.0], requires_grad=True)
        >>> round(ewc.add_gradient({"w": w}).item(), 6), w.grad  # F̃ = [1.5, 0.5]; 2/2 · (1.5 + 0.5) / 2
        (1.0, tensor([1.5000, 0.5000]))
        """
        if not self.active:
            return torch.zeros(())
        names = list(self._weights)
        params = [named_parameters[name] for name in names]
        roots, anchors = self._roots_and_anchors(names, params)
        with torch.no_grad():
            scaled = torch._foreach_sub([p.detach() for p in params], anchors)  # θ − θ*
            torch._foreach_mul_(scaled, roots)  # √F̃ ⊙ (θ − θ*)
            value = torch.stack(torch._foreach_norm(scaled)).square().sum() * (self.lam / 2 / self._count)
            torch._foreach_mul_(scaled, roots)  # F̃ ⊙ (θ − θ*)
            for param in params:
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
            torch._foreach_add_([p.grad for p in params], scaled, alpha=self.lam / self._count)
        return value

    def _roots_and_anchors(self, names: list[str], params: list[torch.Tensor]
                           ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``√F̃`` and ``θ*`` of each parameter, on its device and in its dtype (made once, then kept)."""
        key = tuple((p.device, p.dtype) for p in params)
        cached = self._fused
        if cached is None or cached[0] != key:
            roots = [self._weights[n].to(p.device, p.dtype).sqrt() for n, p in zip(names, params)]
            anchors = [self.anchor[n].to(p.device, p.dtype) for n, p in zip(names, params)]
            self._fused = cached = (key, roots, anchors)
        return cached[1], cached[2]

    def _normalise(self) -> None:
        total = sum(float(f.sum()) for f in self.fisher.values())
        self._count = sum(f.numel() for f in self.fisher.values())
        mean = total / self._count if self._count else 0.0
        scale = 1.0 / mean if mean > 0 else 0.0
        self._weights = {name: f * scale for name, f in self.fisher.items()}
        self._fused = None

    def penalty(self, named_parameters: dict[str, torch.Tensor]) -> torch.Tensor:
        """``λ/2 · mean_i F̃_i (θ_i − θ*_i)²`` over the parameters that have a Fisher, differentiable (the
        module's example); laid out as :meth:`add_gradient` lays it out."""
        if not self.active:
            return torch.zeros(())
        names = list(self._weights)
        params = [named_parameters[name] for name in names]
        roots, anchors = self._roots_and_anchors(names, params)
        total = sum(((root * (param - anchor)) ** 2).sum() for root, param, anchor in zip(roots, params, anchors))
        return (self.lam / 2) * total / self._count

    # -- persistence (safetensors-ready tensors + JSON metadata) --------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"fisher::{k}": v.contiguous().cpu() for k, v in self.fisher.items()}
        out.update({f"anchor::{k}": v.contiguous().cpu() for k, v in self.anchor.items()})
        return out

    def state_metadata(self) -> dict[str, str]:
        return {"ewc": json.dumps({"lam": self.lam, "gamma": self.gamma, "updates": self.updates})}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None,
                   lam: float | None = None, gamma: float | None = None) -> "EWC":
        """Rebuild from :meth:`state_tensors`; ``lam``/``gamma`` override the saved ones."""
        meta = json.loads((metadata or {}).get("ewc", "{}"))
        ewc = cls(lam=meta.get("lam", EWCConfig.lam) if lam is None else lam,
                  gamma=meta.get("gamma", EWCConfig.gamma) if gamma is None else gamma)
        ewc.updates = int(meta.get("updates", 0))
        ewc.fisher = {k.split("::", 1)[1]: v for k, v in tensors.items() if k.startswith("fisher::")}
        ewc.anchor = {k.split("::", 1)[1]: v for k, v in tensors.items() if k.startswith("anchor::")}
        ewc._normalise()
        return ewc


LossFn = Callable[[nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def per_example_fisher(
    model: nn.Module,
    examples: Iterable[dict[str, torch.Tensor]],
    loss_fn: LossFn,
    chunk_size: int = 8,
    method: str = "vmap",
) -> dict[str, torch.Tensor]:
    """Mean over examples of the squared per-example gradient, for each trainable parameter.

    ``examples`` yields single examples (tensors without a batch dimension);
    ``loss_fn(forward, batch)`` returns the mean loss of a batch of one. ``method``: ``vmap``
    (``torch.func.vmap(grad(...))`` over chunks; an error if the model cannot be traced) or
    ``loop`` (one backward pass per example: the same numbers, slower). :func:`fisher_method`
    says which one a model supports.
    """
    if method not in ("vmap", "loop"):
        raise ValueError(f"method must be 'vmap' or 'loop', got {method!r}")
    params = {k: v.detach() for k, v in _trainable(model).items()}
    buffers = dict(model.named_buffers())
    examples = list(examples)
    if not examples:
        raise ValueError("per_example_fisher needs at least one example")
    with evaluating(model):  # no dropout: the Fisher is a property of the parameters, not of a mask
        if method == "vmap":
            with warnings.catch_warnings():  # SDPA has no vmap batching rule yet: slower, still exact
                warnings.filterwarnings("ignore", message=".*performance drop.*")
                sums = _fisher_vmap(model, params, buffers, examples, loss_fn, chunk_size)
        else:
            sums = _fisher_loop(model, examples, loss_fn)
    return {k: v / len(examples) for k, v in sums.items()}


_VMAP_SUPPORT: dict[tuple[str, str], bool] = {}


def fisher_method(model: nn.Module, example: dict[str, torch.Tensor], loss_fn: LossFn) -> str:
    """``vmap`` when ``torch.func`` can trace this kind of model (tried once per model class, on one
    example, per loss function), else ``loop``. Running out of memory is not a tracing failure: it is raised."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    key = (type(inner).__name__, getattr(loss_fn, "__qualname__", repr(loss_fn)))
    if key not in _VMAP_SUPPORT:
        try:
            per_example_fisher(model, [example], loss_fn, method="vmap")
            _VMAP_SUPPORT[key] = True
        except torch.OutOfMemoryError:
            raise
        except Exception:  # noqa: BLE001 - what vmap cannot trace differs by model; the loop is exact
            _VMAP_SUPPORT[key] = False
    return "vmap" if _VMAP_SUPPORT[key] else "loop"


def _fisher_vmap(model, params, buffers, examples, loss_fn, chunk_size):
    from torch.func import functional_call, grad, vmap

    def one_loss(p, example):
        batch = {k: v.unsqueeze(0) for k, v in example.items()}
        return loss_fn(lambda **kw: functional_call(model, (p, buffers), args=(), kwargs=kw), batch)

    per_example_grad = vmap(grad(one_loss), in_dims=(None, 0))
    sums = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in params.items()}
    for start in range(0, len(examples), chunk_size):
        chunk = examples[start:start + chunk_size]
        stacked = {k: torch.stack([ex[k] for ex in chunk]) for k in chunk[0]}
        grads = per_example_grad(params, stacked)
        for k, g in grads.items():
            sums[k] += g.float().pow(2).sum(dim=0)
    return sums


def _fisher_loop(model, examples, loss_fn):
    params = _trainable(model)
    sums = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in params.items()}
    for example in examples:
        batch = {k: v.unsqueeze(0) for k, v in example.items()}
        loss = loss_fn(lambda **kw: model(**kw), batch)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (k, _), g in zip(params.items(), grads):
            if g is not None:
                sums[k] += g.float().pow(2)
    return sums


def batch_gradient_squared(
    model: nn.Module, examples: list[dict[str, torch.Tensor]], loss_fn: LossFn
) -> dict[str, torch.Tensor]:
    """The square of the *batch-mean* gradient: what EWC must *not* use (kept for tests and docs)."""
    params = _trainable(model)
    batch = {k: torch.stack([ex[k] for ex in examples]) for k in examples[0]}
    loss = loss_fn(lambda **kw: model(**kw), batch)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {k: (g.float().pow(2) if g is not None else torch.zeros_like(p))
            for (k, p), g in zip(params.items(), grads)}


def fisher_after_run(live, examples, n: int, seed: int) -> tuple[dict[str, torch.Tensor], str]:
    """The diagonal Fisher of the trainable parameters on ``n`` of ``examples`` (a seeded choice), and
    the method that computed it: ``batched`` when every trainable weight is a bias-free linear layer's
    (LoRA's: :mod:`learner.training.per_example`), else ``vmap`` where ``torch.func`` can trace the
    model, else ``loop``."""
    rng = random.Random(seed + 1)
    chosen = rng.sample(examples, min(n, len(examples)))
    layers = linear_weights(live.model)
    if layers is not None:
        with evaluating(live.model):  # no dropout: the Fisher is a property of the parameters, not of a mask
            by_length = sorted(chosen, key=lambda ex: len(ex["input_ids"]))  # batches of close lengths
            sums = squared_gradient_sums(live.model, layers, by_length, live.tokenizer.pad_id)
        return {name: total / len(chosen) for name, total in sums.items()}, "batched"
    width = max(len(ex["input_ids"]) for ex in chosen)
    pad = live.tokenizer.pad_id
    padded = [{k: v[0].to(live.device) for k, v in collate([ex], pad, width).items()} for ex in chosen]
    method = fisher_method(live.model, padded[0], lm_loss_from_logits)
    return per_example_fisher(live.model, padded, lm_loss_from_logits, method=method), method
