"""Batches that waste little on padding, and the count of what a step computes.

A batch is padded to its longest sequence, so a batch that mixes a 12-token note with a 60-token
conversation turn computes mostly padding. :func:`length_grouped_batches` shuffles each epoch, sorts
pools of a few batches by length and cuts them into batches (the order of the batches shuffled
again): every example is still seen once per epoch, in a seeded random order, but a batch holds
sequences of about the same length. :func:`length_groups` does the same once for the base
rehearsal's samples, drawn a group per step. A batch whose lengths still spread widely (one long
conversation turn among short notes) is computed in parts (:func:`close_length_parts`): each part
padded to its own longest, the loss still the mean over the whole batch, one optimizer step.

:class:`StepCount` adds up the tokens a run computed — real and padded — and the floating-point
operations they cost: a forward pass is ``2·N`` FLOPs per token for ``N`` weights in matrix
products, the backward pass ``2·N`` more for the activations' gradients, and ``2·N_trainable`` for
the trainable weights' own gradients (``6·N`` in all for full training, about ``4·N`` for LoRA).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Container, Iterator, NamedTuple

__all__ = ["Batch", "StepCount", "close_length_parts", "length_grouped_batches", "length_groups", "matmul_weights",
           "part_cost", "step_batches"]

#: Batches per pool sorted by length: larger pools pad less and shuffle less.
POOL_BATCHES = 8

#: What one more forward and backward call of a step costs on a CPU, in tokens computed: fitted on
#: SmolLM2-135M with LoRA on every linear layer, 2 cores, over eleven ways of cutting batches of 8 rows
#: (0.26 s a call and 2.1 ms a token in bf16, 0.49 s and 4.2 ms in float32: about 120 tokens in both).
CPU_PART_COST = 120


class Batch(NamedTuple):
    """One batch of an epoch: ``indices`` into the examples, batch ``index`` of the epoch's ``of``."""

    epoch: int
    index: int
    of: int
    indices: list[int]


def length_grouped_batches(lengths: list[int], batch_size: int, epochs: int, rng: random.Random,
                           resting: Container[int] = frozenset()) -> Iterator[Batch]:
    """Yield :class:`Batch` es: each epoch covers every index of ``lengths`` not ``resting`` once, in
    batches of ``batch_size`` (the last of an epoch may be smaller) whose lengths are close.
    ``resting`` is read as each epoch starts: the caller may grow it between epochs.

    >>> lengths = [50, 10, 48, 12, 11, 52, 49, 9]
    >>> batches = list(length_grouped_batches(lengths, 2, 1, random.Random(0)))
    >>> sorted(i for b in batches for i in b.indices), [sorted(lengths[i] for i in b.indices) for b in batches]
    ([0, 1, 2, 3, 4, 5, 6, 7], [[9, 10], [48, 49], [11, 12], [50, 52]])
    >>> [(b.epoch, b.index, b.of, b.indices) for b in length_grouped_batches([5, 6, 7], 2, 2, random.Random(0), {1})]
    [(0, 0, 1, [0, 2]), (1, 0, 1, [0, 2])]
    """
    pool = batch_size * POOL_BATCHES
    for epoch in range(epochs):
        order = [i for i in range(len(lengths)) if i not in resting]
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), pool):
            ranked = sorted(order[start:start + pool], key=lambda i: lengths[i])  # stable: ties keep the shuffle
            batches += [ranked[b:b + batch_size] for b in range(0, len(ranked), batch_size)]
        full = [b for b in batches if len(b) == batch_size]
        rng.shuffle(full)
        ordered = full + [b for b in batches if len(b) < batch_size]  # a short batch stays last, as it was
        for index, indices in enumerate(ordered):
            yield Batch(epoch, index, len(ordered), indices)


def length_groups(lengths: list[int], size: int, rng: random.Random) -> list[list[int]]:
    """``lengths``' indices in groups of ``size`` of close lengths (ties in a seeded order); the
    groups cover every index once, the last may be smaller.

    >>> length_groups([30, 5, 31, 6, 7], 2, random.Random(1))
    [[1, 3], [4, 0], [2]]
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    ranked = sorted(order, key=lambda i: lengths[i])
    return [ranked[start:start + size] for start in range(0, len(ranked), size)]


def close_length_parts(lengths: list[int], cost: int) -> list[list[int]]:
    """The positions of a batch's sequences (``lengths``) cut into parts of close lengths, each padded
    to its own longest: the cut that computes the fewest tokens when each part beyond the first costs
    ``cost`` tokens more (a call's own work). The parts run shortest first; ``cost`` 0 or less: one part.

    >>> close_length_parts([48, 110, 51, 51, 52, 62, 75, 51], 120)
    [[0, 2, 3, 7, 4], [5, 6, 1]]
    >>> close_length_parts([48, 110, 51, 51, 52, 62, 75, 51], 48)
    [[0, 2, 3, 7, 4], [5, 6], [1]]
    >>> close_length_parts([30, 31, 29, 30], 48)
    [[2, 0, 3, 1]]
    >>> close_length_parts([48, 110], 0)
    [[0, 1]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])  # stable: ties keep the batch's order
    if cost <= 0 or len(order) < 2:
        return [order]
    # best[j]: the fewest tokens (with the calls' cost) computing the j shortest; cut[j]: where its last part starts
    best, cut = [0] + [0] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        best[j], cut[j] = min((best[i] + (j - i) * lengths[order[j - 1]] + cost, i) for i in range(j))
    parts, end = [], len(order)
    while end > 0:
        parts.append(order[cut[end]:end])
        end = cut[end]
    return parts[::-1]


def step_batches(chosen: list[dict], pad_id: int, packs: bool, cost: int) -> tuple[list[int], list[dict]]:
    """The batches a step computes the examples ``chosen`` in — one packed batch, or padded parts of close
    lengths (:func:`close_length_parts` with ``cost``) — and the positions in ``chosen`` of their rows, in order."""
    from learner.model.encoding import collate
    from learner.model.packing import pack

    if packs:
        return list(range(len(chosen))), [pack(chosen, pad_id)]
    parts = close_length_parts([len(ex["input_ids"]) for ex in chosen], cost)
    return [p for part in parts for p in part], [collate([chosen[p] for p in part], pad_id) for part in parts]


def part_cost(setting: int, device_type: str) -> int:
    """``train.split_cost`` for a device: itself, or for -1 (auto) :data:`CPU_PART_COST` on a CPU and 0 (one
    call a step) elsewhere: a GPU computes a batch this small in about the time of its kernel launches,
    so padded tokens cost it little and another call does (not measured here).

    >>> part_cost(-1, "cpu"), part_cost(-1, "cuda"), part_cost(20, "cuda")
    (120, 0, 20)
    """
    if setting >= 0:
        return setting
    return CPU_PART_COST if device_type == "cpu" else 0


def matmul_weights(model) -> tuple[int, int]:
    """The weights of ``model`` that take part in matrix products per token — every parameter of
    two or more dimensions but the input embeddings (a lookup; a tied output head counts once,
    as it is the same tensor) — as ``(frozen, trainable)``.

    >>> import torch.nn as nn
    >>> m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    >>> _ = m[1].weight.requires_grad_(False)
    >>> matmul_weights(m)
    (12, 0)
    """
    import torch.nn as nn

    lookups = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    heads = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    frozen = trainable = 0
    for p in model.parameters():
        if p.dim() < 2 or (id(p) in lookups and id(p) not in heads):
            continue
        if p.requires_grad:
            trainable += p.numel()
        else:
            frozen += p.numel()
    return frozen, trainable


@dataclass
class StepCount:
    """Tokens and FLOPs of a run's training steps, added up batch by batch.

    >>> import torch
    >>> count = StepCount(frozen=100, trainable=10)
    >>> count.add({"input_ids": torch.ones(2, 3), "attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]])})
    >>> count.tokens_real, count.tokens_padded, count.flops, round(count.padding_share, 3)
    (4, 6, 2760, 0.333)
    >>> count.add({"input_ids": torch.ones(1, 6), "tokens_real": torch.tensor(5)})  # packed, one pad
    >>> count.tokens_real, count.tokens_padded
    (9, 12)
    """

    frozen: int
    trainable: int
    tokens_real: int = 0
    tokens_padded: int = 0

    def add(self, batch: dict) -> None:
        """Count one batch: padded (its attention mask says which tokens are real) or packed."""
        self.tokens_padded += batch["input_ids"].numel()
        real = batch["attention_mask"].sum() if "attention_mask" in batch else batch["tokens_real"]
        self.tokens_real += int(real)

    @property
    def flops(self) -> int:
        """What the padded tokens cost: every position is computed, padding or not."""
        return (4 * self.frozen + 6 * self.trainable) * self.tokens_padded

    @property
    def padding_share(self) -> float:
        return 1 - self.tokens_real / self.tokens_padded if self.tokens_padded else 0.0

    def metrics(self, seconds: float) -> dict[str, float]:
        """The run's metrics: tokens, padding share, FLOPs and the rate the steps reached."""
        return {"tokens_real": self.tokens_real, "tokens_padded": self.tokens_padded,
                "padding_share": round(self.padding_share, 4), "train_flops": self.flops,
                "train_gflops_per_s": round(self.flops / seconds / 1e9, 2) if seconds > 0 else 0.0}
