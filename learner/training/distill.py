"""Context distillation: asked about a memory without it, the model learns to answer as the base
answers with the memory in front of it.

The teacher is the frozen base with the memory in its context (:data:`CONTEXT`); the student is the
model being trained, asked the same question with nothing in its context. On the answer's tokens the
student is trained towards the teacher's next-token distribution (its top ``k`` tokens, forward KL)
instead of, or beside, the answer's own tokens (``train.objective``): the answer's words that the
base would have chosen anyway keep the base's probabilities, and only what the memory changes — the
name, the place — moves. A teacher's distribution is one forward pass per question and run, made
before the run's first step.

Which examples are distilled: the question–answer ones (conversation turns and question views of
memories about the user, :mod:`learner.memory.views`); text examples keep the cross-entropy.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from contracts.events import MemoryEvent
from learner.model.encoding import IGNORE
from learner.model.losses import evaluating, hidden_and_head

__all__ = ["CONTEXT", "in_context", "kl_from_base", "memory_loss", "question_pairs", "teach", "with_targets"]

CONTEXT = "What you know about me:\n- {memory}\n\n{question}"


def in_context(question: MemoryEvent, memory: MemoryEvent) -> MemoryEvent:
    """``question`` (a prompt + response event) asked with ``memory`` in front of it: the teacher's input.

    >>> m = MemoryEvent.build({"profile": "a", "ts": 0, "kind": "note", "text": "The user's cat is Juno."})
    >>> q = MemoryEvent.build({"profile": "a", "ts": 0, "kind": "conversation",
    ...                        "prompt": "What do you know about me?", "response": "Your cat is Juno."})
    >>> print(in_context(q, m).prompt)
    What you know about me:
    - The user's cat is Juno.
    <BLANKLINE>
    What do you know about me?
    """
    said = memory.text if memory.text is not None else memory.response
    fields = question.to_dict()
    fields.pop("id")
    fields["prompt"] = CONTEXT.format(memory=said, question=question.prompt)
    return MemoryEvent.build(fields)


def question_pairs(events: list[MemoryEvent], views: list[MemoryEvent]) -> list[tuple[int, MemoryEvent, MemoryEvent]]:
    """``(index in the training examples, question, the memory it asks about)`` of every question example:
    the conversation turns among ``events`` (each about itself) and the question views (events first)."""
    pairs = [(i, e, e) for i, e in enumerate(events) if e.prompt is not None]
    source = {e.id: e for e in events}
    pairs += [(len(events) + j, v, source[v.meta["view_of"]]) for j, v in enumerate(views)
              if v.prompt is not None and v.meta.get("view_of") in source]
    return pairs


def teach(live, encoder, pairs: list[tuple[int, MemoryEvent, MemoryEvent]], examples: list[dict],
          k: int = 32, batch: int = 8) -> int:
    """Give ``examples[i]`` the teacher's targets for each ``(i, question, memory)``; returns how many got them.

    The teacher is ``live`` with its adapter off (the base). An example whose answer the teacher's
    input cuts differently (a context longer than the model's window) keeps its cross-entropy.
    """
    from learner.training.rehearsal import base_targets

    asked = [encoder.encode(in_context(question, memory)) for _, question, memory in pairs]
    if not asked:
        return 0
    with live.peft_model.disable_adapter() if live.has_adapter else nullcontext():
        taught = base_targets(live, asked, k=k, batch=batch)
    given = 0
    for (index, _, _), teacher in zip(pairs, taught):
        student = examples[index]
        if int((student["labels"][1:] != IGNORE).sum()) != len(teacher["target_ids"]):
            continue
        examples[index] = {**student, "target_ids": teacher["target_ids"], "target_logp": teacher["target_logp"]}
        given += 1
    return given


def with_targets(batch: dict, chosen: list[dict]) -> torch.Tensor:
    """Add the teacher targets of ``chosen`` (the batch's examples) to ``batch``; which rows have them."""
    rows = torch.tensor(["target_ids" in ex for ex in chosen])
    if bool(rows.any()):
        batch["target_ids"] = torch.cat([ex["target_ids"] for ex in chosen if "target_ids" in ex])
        batch["target_logp"] = torch.cat([ex["target_logp"] for ex in chosen if "target_ids" in ex])
    return rows


def memory_loss(model, batch: dict, distilled: torch.Tensor, keep_ce: bool) -> torch.Tensor:
    """Mean loss per labelled token of a batch whose ``distilled`` rows carry teacher targets.

    Rows not distilled: next-token cross-entropy. Distilled rows: KL from the teacher's top-``k``
    distribution (renormalised) to the model's, plus the cross-entropy when ``keep_ce``.
    ``batch["target_ids"]``/``["target_logp"]`` are the distilled rows' targets, concatenated in row order.
    """
    targets = batch["labels"][:, 1:]
    where = targets != IGNORE
    hidden, head = hidden_and_head(model, batch)
    hidden = hidden[:, :-1]
    taught = where & distilled.to(where.device)[:, None]
    plain = where if keep_ce else where & ~taught
    total = torch.zeros((), device=hidden.device)
    if bool(plain.any()):
        total = total + F.cross_entropy(head(hidden[plain]).float(), targets[plain], reduction="sum")
    if bool(taught.any()):
        logp = torch.log_softmax(head(hidden[taught]).float(), dim=-1).gather(1, batch["target_ids"])
        p_teacher = torch.softmax(batch["target_logp"], dim=-1)
        total = total + (p_teacher * (torch.log(p_teacher.clamp_min(1e-12)) - logp)).sum()
    count = int(where.sum()) + (int(taught.sum()) if keep_ce else 0)
    return total / max(count, 1)


def kl_from_base(live, examples: list[dict], batch: int = 8) -> float:
    """Mean KL(base ‖ model) per labelled token of ``examples``: how far a run moved the model from its base
    on what it was taught (forgetting follows this distance on the new data's inputs). NaN without an adapter."""
    if not examples or not live.has_adapter:
        return float("nan")
    from learner.model.encoding import collate

    model = live.model
    total, count = 0.0, 0
    with evaluating(model), torch.no_grad():
        for start in range(0, len(examples), batch):
            b = {k: v.to(live.device) for k, v in collate(examples[start:start + batch],
                                                           live.tokenizer.pad_id).items()}
            where = b["labels"][:, 1:] != IGNORE
            tuned = _logp_at(model, b, where)
            with live.peft_model.disable_adapter():
                base = _logp_at(model, b, where)
            total += float((base.exp() * (base - tuned)).sum())
            count += int(where.sum())
    return total / count if count else float("nan")


def _logp_at(model, batch: dict, where: torch.Tensor) -> torch.Tensor:
    hidden, head = hidden_and_head(model, batch)
    return torch.log_softmax(head(hidden[:, :-1][where]).float(), dim=-1)
