"""From memory events to token tensors, and the language-model loss.

A ``text`` event trains on all of its tokens. A ``prompt`` + ``response`` event is laid
out as ``<eos>Q: {prompt}\\nA: {response}<eos>`` and only the response tokens (and the
final end-of-sequence) carry loss. Sequences are right-padded: with causal attention a
real token never sees a pad to its right, so no attention mask is needed.

Examples
--------
>>> from learner.events import MemoryEvent
>>> from learner.model import ByteTokenizer
>>> e = MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": 0, "kind": "conversation",
...                            "prompt": "hi", "response": "yo"})
>>> ex = encode_event(e, ByteTokenizer(), max_len=32)
>>> ByteTokenizer().decode(ex["input_ids"].tolist())
'Q: hi\\nA: yo'
>>> [i for i, label in enumerate(ex["labels"].tolist()) if label != -100]
[10, 11, 12]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from learner.events import MemoryEvent

__all__ = ["IGNORE", "encode_event", "collate", "lm_loss", "prompt_text", "mean_loss"]

IGNORE = -100


def prompt_text(prompt: str) -> str:
    """How a prompt is shown to the model (also used by ``memstream generate``)."""
    return f"Q: {prompt}\nA: "


def encode_event(event: MemoryEvent, tokenizer, max_len: int) -> dict[str, torch.Tensor]:
    """Token ids and labels for one event, truncated to ``max_len`` tokens."""
    eos = tokenizer.eos_id
    if event.text is not None:
        ids = [eos] + tokenizer.encode(event.text) + [eos]
        labels = [IGNORE] + ids[1:]
    else:
        context = [eos] + tokenizer.encode(prompt_text(event.prompt or ""))
        answer = tokenizer.encode(event.response or "") + [eos]
        # keep at least part of the answer when the prompt is long
        context = context[: max(1, max_len - min(len(answer), max_len // 2))]
        ids = context + answer
        labels = [IGNORE] * len(context) + answer
    ids, labels = ids[:max_len], labels[:max_len]
    # labels[t] is the target *at* position t; the loss shifts by one itself
    return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}


def collate(examples: list[dict[str, torch.Tensor]], pad_id: int, length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example (or ``length``)."""
    width = length or max(len(ex["input_ids"]) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        ids[row, :n] = ex["input_ids"]
        labels[row, :n] = ex["labels"]
    return {"input_ids": ids, "labels": labels}


def lm_loss(forward, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy (nats per target token) over positions with a label.

    ``forward(**kwargs)`` is the model call (a plain module call, or ``functional_call``
    under ``torch.func``).
    """
    logits = forward(input_ids=batch["input_ids"]).logits
    shifted_logits = logits[:, :-1, :].float()
    targets = batch["labels"][:, 1:]
    return F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE
    )


@torch.no_grad()
def mean_loss(model, examples: list[dict[str, torch.Tensor]], pad_id: int, batch_size: int = 32,
              device: torch.device | None = None) -> float:
    """Token-weighted mean loss (nats per target token) over ``examples``; evaluation mode."""
    if not examples:
        return math.nan
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start:start + batch_size], pad_id)
            if device is not None:
                batch = {k: v.to(device) for k, v in batch.items()}
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            if n == 0:
                continue
            # .item() syncs with the device; once per evaluation batch is fine
            total += lm_loss(lambda **kw: model(**kw), batch).item() * n
            count += n
    finally:
        model.train(was_training)
    return total / count if count else math.nan
