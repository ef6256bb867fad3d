"""Graded recall: how well the model knows each held-out question's answer, in two numbers that move
with every question's margin, not only when a greedy answer flips (20 questions a phase count greedy
recall in steps of 5 points).

- **Answer loss**: the mean loss (nats per token) of the fact's own answer sentence ("You fly with
  Finnair.") after the held-out question, in the chat format. Most of it is the sentence's frame — whether
  the question calls up the right memory at all — since the value, once the frame is there, is
  near-certain in a model that learned it.
- **Value choice**: the same sentence filled in with *every* value its relation can take (eight names,
  places, brands); the probability the model puts on the told one, normalised over those candidates.
  1 / (number of candidates) is chance (0.125 for the bundled people). It tells storage from retrieval:
  near 1 while greedy answers still miss means the value is stored and the question does not reach it.

>>> import math
>>> round(told_share([-2.0, -2.0 + math.log(3), -9.0], 1), 3)
0.75
"""

from __future__ import annotations

import math

import torch

from contracts.events import MemoryEvent
from learner.model.losses import eval_batches, evaluating, loss_sums_by_row

__all__ = ["answer_logliks", "graded_by_phase", "told_share"]


def told_share(logliks: list[float], told: int) -> float:
    """The probability of candidate ``told`` among ``logliks`` (a softmax over the candidates)."""
    top = max(logliks)
    weights = [math.exp(x - top) for x in logliks]
    return weights[told] / sum(weights)


@torch.no_grad()
def answer_logliks(live, examples: list[dict], max_tokens: int = 4096) -> list[tuple[float, int]]:
    """Each encoded example's summed log-likelihood (nats) of its labelled tokens under ``live``'s model,
    and how many there are."""
    logliks = [(0.0, 0)] * len(examples)
    with evaluating(live.model):
        for indices, batch in eval_batches(examples, live.tokenizer.pad_id, live.device, max_tokens):
            with live.autocast()():
                _, sums, counts = loss_sums_by_row(live.model, batch)
            for i, total, count in zip(indices, sums.tolist(), counts.tolist()):
                logliks[i] = (-total, int(count))
    return logliks


def graded_by_phase(live, asked: list[tuple], phases: int) -> tuple[list[float], list[float]]:
    """For each phase, the mean over its ``(fact, question)`` pairs of the told answer's loss (nats/token)
    and of the probability given to the told value among its relation's values (module docstring)."""
    examples, spans = [], []
    for fact, question in asked:
        values = fact.relation.values
        spans.append((len(examples), len(values), values.index(fact.value), fact.phase))
        examples += [live.encoder.encode(MemoryEvent.build({
            "profile": "recall", "ts": 0.0, "kind": "conversation", "prompt": question,
            "response": fact.relation.answer.format(v=value)})) for value in values]
    scored = answer_logliks(live, examples)
    losses: list[list[float]] = [[] for _ in range(phases)]
    shares: list[list[float]] = [[] for _ in range(phases)]
    for start, n, told, phase in spans:
        total, tokens = scored[start + told]
        losses[phase].append(-total / max(tokens, 1))
        shares[phase].append(told_share([loglik for loglik, _ in scored[start:start + n]], told))
    return [sum(x) / len(x) for x in losses], [sum(x) / len(x) for x in shares]
