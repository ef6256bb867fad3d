"""Per-example squared gradients of linear layers' weights from one batched backward pass.

For a linear layer ``y = x·Wᵀ``, the gradient of example ``n``'s loss with respect to ``W`` is
``Σ_t g_{n,t}ᵀ x_{n,t}`` over its positions ``t`` (``g`` the gradient at the layer's output), and
every example's ``g`` comes out of one backward pass of the *sum* of the examples' losses, since
one example's loss does not depend on another's activations. So a batch gives every example's
gradient exactly — the trick of per-sample-gradient libraries — at the cost of a training step
rather than one backward pass per example. LoRA's trainable weights are all such layers (its ``A``
and ``B`` have no bias), which is what EWC's Fisher needs (:mod:`learner.training.ewc`).
Right padding costs nothing but compute: a pad position's output gradient is zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from learner.model.encoding import IGNORE, collate
from learner.model.losses import hidden_and_head

__all__ = ["linear_weights", "squared_gradient_sums"]


def linear_weights(model: nn.Module) -> dict[str, nn.Linear] | None:
    """The linear layer of every trainable parameter, by the parameter's name; None when some
    trainable parameter is not the weight of a bias-free linear layer (then this method does not apply).

    >>> m = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False))
    >>> _ = m[0].weight.requires_grad_(False)
    >>> list(linear_weights(m))
    ['1.weight']
    >>> linear_weights(nn.Linear(2, 2)) is None  # its bias is trainable
    True
    """
    layers = {f"{name}.weight" if name else "weight": module for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and module.bias is None}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if not trainable or any(name not in layers or not layers[name].weight.requires_grad for name in trainable):
        return None
    return {name: layers[name] for name in trainable}


def _summed_example_means(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Σ over the batch's examples of each one's mean next-token loss on its labelled positions."""
    targets = batch["labels"][:, 1:]
    where = targets != IGNORE
    rows = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(targets)[where]
    hidden, head = hidden_and_head(model, batch)
    per_token = F.cross_entropy(head(hidden[:, :-1][where]).float(), targets[where], reduction="none")
    counts = where.sum(dim=1).clamp_min(1).to(per_token.dtype)
    return (torch.zeros(targets.shape[0], device=per_token.device).index_add(0, rows, per_token) / counts).sum()


def squared_gradient_sums(model: nn.Module, layers: dict[str, nn.Linear], examples: list[dict[str, torch.Tensor]],
                          pad_id: int, chunk_size: int = 16) -> dict[str, torch.Tensor]:
    """Σ over ``examples`` of each example's squared loss gradient, for every weight in ``layers``
    (from :func:`linear_weights`), ``chunk_size`` examples per backward pass."""
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    def keep(name: str):
        def hook(_module, args, out):
            inputs[name] = args[0].detach()
            out.register_hook(lambda grad: outputs.__setitem__(name, grad))
        return hook

    handles = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    sums = {name: torch.zeros_like(layer.weight, dtype=torch.float32) for name, layer in layers.items()}
    params = [layer.weight for layer in layers.values()]
    try:
        for start in range(0, len(examples), chunk_size):
            batch = collate(examples[start:start + chunk_size], pad_id)
            batch = {k: v.to(params[0].device) for k, v in batch.items()}
            torch.autograd.grad(_summed_example_means(model, batch), params)
            for name in layers:
                x, g = inputs[name].float(), outputs[name].float()
                per_example = torch.einsum("bto,bti->boi", g, x)
                sums[name] += per_example.pow(2).sum(dim=0)
            inputs.clear()
            outputs.clear()
    finally:
        for handle in handles:
            handle.remove()
    return sums
