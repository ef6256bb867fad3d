"""Sequences packed end to end: a training batch that computes no padding.

A padded batch computes every position of its longest sequence in every row; a packed batch lays
its sequences end to end in one row, each with its own positions (0, 1, … again at every start),
and no attention mask: a model whose causal mask reads where each sequence starts from the
positions attends only within each sequence, so a token sees exactly what it saw in its own row.
The first label of each sequence is dropped (in its own row nothing predicts it; packed, the end of
the sequence before would), so the labelled positions, and the loss, are the same as padded.

Rows hold at most ``max_tokens`` tokens (the attention of a row grows with the square of its
length); the rows of a batch are padded to the longest, with the pad's positions running on from
the last sequence's, so no real token sees them and no label is on them. ``tokens_real`` counts the
tokens that are not padding.

Whether a model reads packed positions this way is measured, not assumed: :func:`packs_sequences`
compares a packed batch's loss with the padded one's on the model itself.

>>> import torch
>>> a = {"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7])}
>>> b = {"input_ids": torch.tensor([8, 9]), "labels": torch.tensor([8, 9])}
>>> batch = pack([a, b], pad_id=0)
>>> batch["input_ids"].tolist(), batch["labels"].tolist(), batch["position_ids"].tolist()
([[5, 6, 7, 8, 9]], [[-100, 6, 7, -100, 9]], [[0, 1, 2, 0, 1]])
>>> pack([a, b], pad_id=0, max_tokens=3)["position_ids"].tolist()
[[0, 1, 2], [0, 1, 2]]
"""

from __future__ import annotations

import torch
from torch import nn

from learner.model.encoding import IGNORE, collate

__all__ = ["PACK_TOKENS", "pack", "packs_sequences"]

#: Most tokens in one packed row.
PACK_TOKENS = 1024


def _rows(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped into rows of at most ``max_tokens`` tokens, in order (a longer one alone)."""
    rows, current, used = [], [], 0
    for i, n in enumerate(lengths):
        if current and used + n > max_tokens:
            rows.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    return rows + [current] if current else rows


def pack(examples: list[dict[str, torch.Tensor]], pad_id: int, max_tokens: int = PACK_TOKENS
         ) -> dict[str, torch.Tensor]:
    """``examples`` laid end to end in rows of at most ``max_tokens`` tokens (module docstring)."""
    lengths = [len(ex["input_ids"]) for ex in examples]
    rows = _rows(lengths, max_tokens)
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.arange(width).repeat(len(rows), 1)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = lengths[i]
            ids[r, at:at + n] = examples[i]["input_ids"]
            labels[r, at + 1:at + n] = examples[i]["labels"][1:]
            positions[r, at:] = torch.arange(width - at)
            at += n
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "tokens_real": torch.tensor(sum(lengths))}


@torch.no_grad()
def packs_sequences(model: nn.Module, pad_id: int) -> bool:
    """Whether ``model`` keeps packed sequences apart: the loss of two made-up sequences packed is
    their padded loss, up to rounding (1e-4 of it in float32, 1e-2 in a 16-bit dtype; a sequence
    that saw the other's tokens differs by more, even in a model with random weights)."""
    from learner.model.losses import evaluating, lm_loss

    generator = torch.Generator().manual_seed(0)
    vocab = min(getattr(getattr(model, "config", None), "vocab_size", None) or 256, 1000)
    examples = [{"input_ids": (ids := torch.randint(3, vocab, (n,), generator=generator)), "labels": ids.clone()}
                for n in (9, 7)]
    weight = next(model.parameters())
    device, tolerance = weight.device, 1e-4 if weight.dtype == torch.float32 else 1e-2
    with evaluating(model):
        padded, packed = (float(lm_loss(model, {k: v.to(device) for k, v in batch.items()}))
                          for batch in (collate(examples, pad_id), pack(examples, pad_id)))
    return abs(packed - padded) <= tolerance * abs(padded)
