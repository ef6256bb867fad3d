"""Graded recall: how strongly the model prefers the value it was told over the others it could have been.

A greedy answer either names the fact's key word or not, so 20 questions a phase count recall in steps
of 5 points. Here each held-out question is answered, in the chat format, with the fact's own answer
sentence filled in with *every* value its relation can take (eight names, places, brands); the model's
log-likelihood of each answer, normalised over those candidates, gives the probability it puts on the
told one. Averaged over a phase's questions it is a number between 0 and 1 that moves with every
question's margin, not only when an answer flips; 1 / (number of candidates) is chance (0.125 for the
bundled people). The candidates differ only in the value, so the sentence around it cancels out.

>>> import math
>>> round(told_share([-2.0, -2.0 + math.log(3), -9.0], 1), 3)
0.75
"""

from __future__ import annotations

import math

import torch

from contracts.events import MemoryEvent
from learner.model.encoding import IGNORE, collate
from learner.model.losses import lm_loss_by_row, token_batches

__all__ = ["answer_logliks", "choice_by_phase", "told_share"]


def told_share(logliks: list[float], told: int) -> float:
    """The probability of candidate ``told`` among ``logliks`` (a softmax over the candidates)."""
    top = max(logliks)
    weights = [math.exp(x - top) for x in logliks]
    return weights[told] / sum(weights)


@torch.no_grad()
def answer_logliks(live, examples: list[dict], max_tokens: int = 4096) -> list[float]:
    """Each encoded example's summed log-likelihood (nats) of its labelled tokens under ``live``'s model."""
    model, pad = live.model, live.tokenizer.pad_id
    was_training = model.training
    model.eval()
    logliks = [0.0] * len(examples)
    try:
        for indices in token_batches(examples, max_tokens):
            batch = {k: v.to(live.device) for k, v in collate([examples[i] for i in indices], pad).items()}
            with live.autocast()():
                _, row_losses = lm_loss_by_row(model, batch)
            for i, row_loss in zip(indices, row_losses.tolist()):
                labelled = int((examples[i]["labels"][1:] != IGNORE).sum())
                logliks[i] = -row_loss * labelled
    finally:
        model.train(was_training)
    return logliks


def choice_by_phase(live, asked: list[tuple], phases: int) -> list[float]:
    """For each phase, the mean over its ``(fact, question)`` pairs of the probability the model gives the
    told value among its relation's values (module docstring)."""
    examples, spans = [], []
    for fact, question in asked:
        values = fact.relation.values
        spans.append((len(examples), len(values), values.index(fact.value), fact.phase))
        examples += [live.encoder.encode(MemoryEvent.build({
            "profile": "recall", "ts": 0.0, "kind": "conversation", "prompt": question,
            "response": fact.relation.answer.format(v=value)})) for value in values]
    logliks = answer_logliks(live, examples)
    shares: list[list[float]] = [[] for _ in range(phases)]
    for start, n, told, phase in spans:
        shares[phase].append(told_share(logliks[start:start + n], told))
    return [sum(s) / len(s) for s in shares]
