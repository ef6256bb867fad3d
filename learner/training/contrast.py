"""Wrong answers pushed down: a question about one fact, answered with another fact's words.

Asked about one fact, a model taught many answers the question with another ("Who is my sister?" →
"Your sister is Emrys.", the nephew's name; "What sport do I practise?" → "You practise the mandolin
on Sundays."). Beside the answer's own cross-entropy, each question example of a run (a conversation
turn, a question view that names what it asks about) is paired, each time it is drawn, with a
**wrong answer**, and the model learns not to take the one token where the wrong answer leaves the
right one: unlikelihood, ``-log(1 - p(token))`` (Welleck et al., arXiv 1908.04319), at that position
alone — every other token of the wrong answer follows a prefix the model should not be on.

The wrong answers of a question are made from the run's own memories:

- **another value in the right answer's words**: "Your sister is called Emrys." — the value of an
  answer is the name its question asks about, or its *key word* (one that few of the run's memories
  hold, at most :data:`learner.memory.links.MAX_NAMED_BY`: the value told, the slot's own words) that
  its question does not hold and most memories hold;
- **another memory's statement**, said to the user ("You practise the mandolin on Sundays."), unless
  it shares a key word with the right answer: the fact's own other wordings are never pushed down.

Examples
--------
>>> from contracts.events import MemoryEvent
>>> def said(text=None, prompt=None, response=None):
...     return MemoryEvent.build({"profile": "a", "ts": 0, "kind": "note" if text else "conversation",
...                               "text": text, "prompt": prompt, "response": response})
>>> memories = [said(prompt="Which sport do I do?", response="You do curling."),
...             said(text="Observation: the user trains at curling twice a week."),
...             said(text="Observation: the user practises the mandolin on Sundays."),
...             said(prompt="What instrument do I play?", response="You play the mandolin.")]
>>> choices = wrong_answers(memories, memories)
>>> for index in sorted(choices):
...     print(memories[index].response, "->", choices[index])
You do curling. -> ['You do mandolin.', 'You play the mandolin.', 'You practise the mandolin on Sundays.']
You play the mandolin. -> ['You play the curling.', 'You do curling.', 'You train at curling twice a week.']
"""

from __future__ import annotations

import random
import re
from collections import Counter

import torch

from contracts.events import MemoryEvent
from learner.memory.links import MAX_NAMED_BY, WORD
from learner.memory.views import RECALL_PROMPTS, statement_of, why_no_view
from learner.model.encoding import IGNORE, collate
from learner.model.losses import hidden_and_head

__all__ = ["WrongAnswers", "unlikelihood_example", "unlikelihood_loss", "wrong_answers"]

_GENERAL = frozenset(RECALL_PROMPTS)  # questions every memory about the user answers: no wrong answer
_ASKS_ABOUT = re.compile(r"What do you know about (.+)\?")  # the question views that name what they ask about


def _words(text: str) -> list[str]:
    return WORD.findall(text)


def _held_by(statements: list[str]) -> Counter:
    """How many of ``statements`` hold each word (lower case)."""
    return Counter(w for s in set(statements) for w in {w.lower() for w in _words(s)})


def _value(example: MemoryEvent, held_by: Counter) -> str | None:
    """What ``example``'s answer tells: the name its question asks about, or of its key words that its question
    does not hold, the one most memories hold (the fact's every wording names its value),
    the last of them on a tie ("What street do I live on?" → "You live on Larkspur Street.": Larkspur)."""
    asked = _ASKS_ABOUT.fullmatch(example.prompt)
    if asked and asked.group(1) in example.response:
        return asked.group(1)
    in_question = {w.lower() for w in _words(example.prompt)}
    told = [(held_by[w.lower()], at, w) for at, w in enumerate(_words(example.response))
            if held_by[w.lower()] <= MAX_NAMED_BY and w.lower() not in in_question]
    return max(told)[2] if told else None


def wrong_answers(memories: list[MemoryEvent], examples: list[MemoryEvent]) -> dict[int, list[str]]:
    """For each question example (its index in ``examples``): wrong answers to it, made from the run's ``memories``.

    A question example has a prompt that is not a general question about the user
    (:data:`learner.memory.views.RECALL_PROMPTS`). Its wrong answers: its own answer with each other
    question's value in place of its value (one that shares no key word with its answer), then the
    statements of ``memories`` that share no key word with its answer.
    """
    statements = sorted({statement_of(m) for m in memories if why_no_view(m) is None})
    held_by = _held_by(statements)
    key = {w for w, n in held_by.items() if n <= MAX_NAMED_BY}
    asked = {i: e for i, e in enumerate(examples) if e.prompt is not None and e.prompt not in _GENERAL and e.response}
    values = {i: v for i, e in asked.items() if (v := _value(e, held_by)) is not None}
    others = sorted(set(values.values()), key=lambda v: (v.lower(), v))
    choices = {}
    for index, example in asked.items():
        own = {w.lower() for w in _words(example.response)} & key
        wrong = []
        if index in values:
            value = values[index]
            at = example.response.rfind(value)
            wrong = [example.response[:at] + other + example.response[at + len(value):]
                     for other in others if not own & {w.lower() for w in _words(other)}]
        wrong += [s for s in statements if s != example.response and not own & {w.lower() for w in _words(s)}]
        if wrong:
            choices[index] = wrong
    return choices


def unlikelihood_example(encoder, question: MemoryEvent, wrong: str, right: dict) -> dict | None:
    """``question``'s prompt with the ``wrong`` answer up to the one token where it leaves the ``right``
    example's tokens, that token labelled (None when it never does: a wrong answer that begins the right one).
    What follows that token cannot change its probability in a causal model, so it is not trained on."""
    fields = question.to_dict()
    fields.pop("id")
    fields["response"] = wrong
    encoded = encoder.encode(MemoryEvent.build(fields))
    ids, right_ids = encoded["input_ids"].tolist(), right["input_ids"].tolist()
    labelled = (encoded["labels"] != IGNORE).tolist()
    for position, token in enumerate(ids):
        if position >= len(right_ids) or token != right_ids[position]:
            if not labelled[position]:
                return None  # the prompts differ: not a wrong answer to this question
            labels = torch.full((position + 1,), IGNORE, dtype=encoded["labels"].dtype)
            labels[position] = token
            return {"input_ids": encoded["input_ids"][:position + 1], "labels": labels}
    return None


def unlikelihood_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean ``-log(1 - p(token))`` over the labelled positions of ``batch``: each labelled token made unlikely.

    >>> import torch
    >>> class Head(torch.nn.Module):  # a model that gives every token the same probability
    ...     def forward(self, input_ids, **_):
    ...         return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 4)})()
    >>> batch = {"input_ids": torch.tensor([[1, 2, 3]]), "labels": torch.tensor([[-100, -100, 3]])}
    >>> round(float(unlikelihood_loss(Head(), batch)), 4)  # -log(1 - 1/4)
    0.2877
    """
    targets = batch["labels"][:, 1:]
    where = targets != IGNORE
    hidden, head = hidden_and_head(model, batch)
    logp = torch.log_softmax(head(hidden[:, :-1][where]).float(), dim=-1).gather(1, targets[where][:, None])
    return -torch.log1p(-logp.exp().clamp(max=1 - 1e-6)).mean()


class WrongAnswers:
    """A run's wrong answers (:func:`wrong_answers` of its memories), one drawn for each question example of
    a batch, seeded; each ``(example, wrong answer)`` pair is encoded once."""

    def __init__(self, encoder, memories: list[MemoryEvent], told: list[MemoryEvent], examples: list[dict],
                 seed: int):
        self.encoder, self.told, self.examples = encoder, told, examples
        self.choices = wrong_answers(memories, told)
        self._rng, self._encoded = random.Random(seed), {}

    def batch(self, indices: list[int], pad_id: int) -> dict | None:
        """The padded batch of wrong answers for the examples at ``indices`` (None when none of them asks)."""
        pushed = []
        for i in indices:
            if i in self.choices:
                said = self._rng.choice(self.choices[i])
                if (i, said) not in self._encoded:
                    self._encoded[i, said] = unlikelihood_example(self.encoder, self.told[i], said, self.examples[i])
                pushed += [self._encoded[i, said]] if self._encoded[i, said] is not None else []
        return collate(pushed, pad_id) if pushed else None
