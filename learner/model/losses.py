"""Language-model losses over encoded examples: per-token cross-entropy on the labelled positions,
computed in chunks from the decoder's hidden states (no full-vocabulary logits over every
position at once), and the token-batched mean loss the gate's evaluations use."""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from learner.model.encoding import IGNORE, collate

__all__ = ["eval_batches", "evaluating", "hidden_and_head", "lm_loss", "lm_loss_by_parts", "lm_loss_by_row",
           "lm_loss_from_logits", "loss_sums", "loss_sums_by_row", "mean_loss", "token_batches"]


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The body and output head of a causal LM whose logits are exactly ``head(hidden)``; None otherwise
    (logit soft-capping or scaling, an output bias): then the loss takes the model's own logits."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    body = getattr(inner, "base_model", inner)
    if body is inner or not isinstance(head, nn.Linear) or head.bias is not None:
        return None
    config = getattr(inner, "config", None)
    for key in ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale"):
        if getattr(config, key, None) not in (None, 1, 1.0):
            return None
    return body, head


class _FullLogits(nn.Module):
    """The head of a model whose logits are not a plain linear map: returns the already computed logits."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return logits


def hidden_and_head(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, nn.Module]:
    """The last hidden states of ``batch`` (padded, or packed: :mod:`learner.model.packing`) and the
    module that turns positions of them into logits (for a model with soft-capped or scaled logits:
    its full logits, and the identity)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch.get("attention_mask"),
              "position_ids": batch.get("position_ids"), "use_cache": False}  # positions: packed sequences
    parts = _decoder_and_head(model)
    if parts is None:
        return model(**inputs).logits, _FullLogits()
    body, head = parts
    return body(**inputs).last_hidden_state, head


def _labelled_losses(model: nn.Module, batch: dict[str, torch.Tensor], chunk: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy at each labelled position (in row order), and where they are.

    Logits are computed only where a label is (the response of a conversation, not its prompt)
    and ``chunk`` positions at a time, so the full-vocabulary logits of a whole batch never exist.
    """
    targets = batch["labels"][:, 1:]
    where = targets != IGNORE
    count = int(where.sum())  # a device-to-host sync: the count decides the shapes below
    hidden, head = hidden_and_head(model, batch)
    chosen, wanted = hidden[:, :-1][where], targets[where]
    losses = torch.cat([F.cross_entropy(head(chosen[start:start + chunk]).float(), wanted[start:start + chunk],
                                        reduction="none") for start in range(0, max(count, 1), chunk)])
    return losses, where


def loss_sums(model: nn.Module, batch: dict[str, torch.Tensor], chunk: int = 2048) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy (nats) over the labelled positions, and their count."""
    losses, _ = _labelled_losses(model, batch, chunk)
    return losses.sum(), losses.numel()


def lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per target token) over the labelled positions."""
    total, count = loss_sums(model, batch)
    return total / max(count, 1)


def loss_sums_by_row(model: nn.Module, batch: dict[str, torch.Tensor], chunk: int = 2048
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`loss_sums`'s per-token losses (with their graph), and each example's summed loss (nats) and
    labelled-token count (detached), in the batch's order: its rows, or the sequences of a packed batch."""
    losses, where = _labelled_losses(model, batch, chunk)
    examples, n = _example_of(batch)
    owner = examples[:, 1:][where]  # the example of each labelled position
    sums = torch.zeros(n, device=losses.device).index_add_(0, owner, losses.detach())
    counts = torch.zeros(n, device=losses.device).index_add_(0, owner, torch.ones_like(losses))
    return losses, sums, counts


def lm_loss_by_row(model: nn.Module, batch: dict[str, torch.Tensor], chunk: int = 2048
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lm_loss`, and each example's own mean loss over its labelled positions (detached; 0 for
    one with none), in the batch's order: its rows, or the sequences of a packed batch."""
    return lm_loss_by_parts(model, [batch], chunk)


def lm_loss_by_parts(model: nn.Module, parts: list[dict[str, torch.Tensor]], chunk: int = 2048
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lm_loss_by_row` of one batch computed in ``parts`` (collated batches of its rows): the mean
    over every labelled position of them all — the loss of the rows padded together — and each row's
    mean, the parts' rows one after another."""
    total, count, rows = None, 0, []
    for part in parts:
        losses, sums, counts = loss_sums_by_row(model, part, chunk)
        total = losses.sum() if total is None else total + losses.sum()
        count += losses.numel()
        rows.append(sums / counts.clamp_min(1))
    return total / max(count, 1), torch.cat(rows)


def _example_of(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """The example each position of ``batch`` belongs to — its row, or, packed, the sequence it is in
    (a new one starts at every position 0) — and how many examples there are."""
    ids = batch["input_ids"]
    if "position_ids" not in batch:
        return torch.arange(ids.shape[0], device=ids.device)[:, None].expand_as(ids), ids.shape[0]
    starts = (batch["position_ids"] == 0).flatten()
    return (starts.cumsum(0) - 1).view_as(ids), int(starts.sum())


def lm_loss_from_logits(forward, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The same mean loss from the model's full logits, written without data-dependent shapes so that
    ``torch.func.vmap`` can batch it (the per-example Fisher uses it).

    No attention mask is passed: examples are right-padded, and under causal attention a real token
    never sees a pad to its right, so the loss is the same (and the mask's data-dependent shortcuts
    stay out of ``vmap``'s way)."""
    logits = forward(input_ids=batch["input_ids"]).logits
    shifted = logits[:, :-1, :].float()
    targets = batch["labels"][:, 1:]
    return F.cross_entropy(shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), ignore_index=IGNORE)


def token_batches(examples: list[dict[str, torch.Tensor]], max_tokens: int) -> list[list[int]]:
    """Indices of ``examples`` grouped so that each padded batch holds at most ``max_tokens`` tokens
    (longest first; one example longer than that is a batch of its own).

    >>> ex = [{"input_ids": [1] * n} for n in (5, 9, 2, 9)]
    >>> token_batches(ex, max_tokens=18)
    [[1, 3], [0, 2]]
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    batches, current, width = [], [], 0
    for i in order:
        n = len(examples[i]["input_ids"])
        if current and max(width, n) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, n)
    if current:
        batches.append(current)
    return batches


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in evaluation mode (no dropout) inside the block, and back in the mode it was in after.

    >>> layer = nn.Dropout()
    >>> with evaluating(layer):
    ...     layer.training
    False
    >>> layer.training
    True
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def eval_batches(examples: list[dict[str, torch.Tensor]], pad_id: int, device: torch.device | None = None,
                 max_tokens: int = 4096) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """``examples`` collated into padded batches of at most ``max_tokens`` tokens (:func:`token_batches`),
    each with the indices of the examples it holds, on ``device``."""
    for indices in token_batches(examples, max_tokens):
        batch = collate([examples[i] for i in indices], pad_id)
        yield indices, batch if device is None else {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def mean_loss(model: nn.Module, examples: list[dict[str, torch.Tensor]], pad_id: int,
              device: torch.device | None = None, max_tokens: int = 4096, autocast: Any = None) -> float:
    """Token-weighted mean loss (nats per target token) over ``examples``, in evaluation mode.

    Batches hold at most ``max_tokens`` tokens (memory stays bounded whatever the model's size);
    ``autocast`` is an optional context factory (:meth:`learner.model.adapted.AdaptedModel.autocast`)."""
    if not examples:
        return math.nan
    total, count = 0.0, 0
    with evaluating(model):
        for _, batch in eval_batches(examples, pad_id, device, max_tokens):
            with (autocast or nullcontext)():
                summed, n = loss_sums(model, batch)
            if n:
                total += float(summed)  # a device-to-host sync, once per evaluation batch
                count += n
    return total / count if count else math.nan
