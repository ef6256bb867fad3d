"""Graded recall's bookkeeping: each question's candidates scored together; per phase, the told answer's
loss and the told value's share."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from memstream.bench import recall_choice
from memstream.samples.facts import make_person


def test_graded_recall_is_the_told_answers_loss_and_the_told_values_share_per_phase(monkeypatch):
    person = make_person(seed=3, phases=2, facts_per_phase=2)
    asked = [(f, q) for f in person.facts for q in f.questions]
    told = {f.relation.answer.format(v=f.value) for f in person.facts if f.phase == 0}
    live = SimpleNamespace(encoder=SimpleNamespace(encode=lambda event: {"response": event.response}))

    def logliks(_live, examples):  # phase 0 (its 2 facts x 2 questions x 8 values come first): the told
        return [(-2.0, 4) if i >= 2 * 2 * 8 or e["response"] in told else (-50.0, 4)  # answer far likelier;
                for i, e in enumerate(examples)]  # phase 1: no preference; 4 tokens each

    monkeypatch.setattr(recall_choice, "answer_logliks", logliks)
    losses, shares = recall_choice.graded_by_phase(live, asked, person.phases)
    assert shares[0] == pytest.approx(1.0) and shares[1] == pytest.approx(1 / 8)
    assert losses == [pytest.approx(0.5), pytest.approx(0.5)]  # the told answer's 2 nats over its 4 tokens
