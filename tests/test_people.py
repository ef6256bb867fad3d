"""The made-up people of the recall benchmark: held-out questions, and values that name one fact each."""

import pytest

from memstream.samples.diary import make_diary_person
from memstream.samples.facts import make_person, recalled
from memstream.samples.wider import ADDED_RELATIONS, WIDER_RELATIONS, make_wider_person


@pytest.mark.parametrize("make, phases, per_phase", [(make_person, 3, 10), (make_diary_person, 4, 8),
                                                     (make_wider_person, 4, 20)])
def test_no_held_out_question_is_in_a_memory_and_every_fact_is_recalled_by_its_value(make, phases, per_phase):
    for seed in range(3):
        person = make(seed, phases, per_phase)
        assert [len(person.phase(p)) for p in range(phases)] == [per_phase] * phases
        for fact in person.facts:
            told = " ".join(str(e) for e in fact.events("ana", ts=0.0)).lower()
            assert not [q for q in fact.questions if q.lower() in told], fact.relation.slot
            assert recalled(fact, f"It is {fact.value}.") and not recalled(fact, "I don't know.")


def test_an_added_relation_value_names_no_other_fact_and_no_wording_names_it():
    relations = [r for theme in WIDER_RELATIONS for r in theme]
    added = {r.slot for theme in ADDED_RELATIONS for r in theme}
    assert len({r.slot for r in relations}) == len(relations) == 80 and len(added) == 50
    clashes = []
    for r in relations:
        for other in relations:
            wording = " ".join([other.ask, other.answer, other.observation, other.reflection, *other.questions])
            wording = wording.replace("{v}", "").lower()
            for value in r.values:
                if r.slot not in added and other.slot not in added:
                    continue  # the facts person's own relations, as its measured seeds drew them
                if value.lower() in wording or (other is not r and [v for v in other.values if value.lower() in v.lower()]):
                    clashes.append((r.slot, value, other.slot))
    assert clashes == []
