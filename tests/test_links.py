"""Linked views: a conversation turn's question answered by the other memories that name what it told."""

import pytest

from contracts.events import MemoryEvent
from learner.config import load_config
from learner.fields import ConfigError
from learner.memory.links import MAX_NAMED_BY, MAX_TOLD, linked_views, told_words
from learner.memory.views import with_views
from memstream.samples.facts import make_person


def note(text: str) -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": 5.0, "kind": "observation", "text": text})


def turn(prompt: str, response: str) -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": 5.0, "kind": "conversation", "prompt": prompt,
                              "response": response})


def test_every_turn_of_the_facts_person_is_linked_to_its_own_facts_notes_and_no_other():
    person = make_person(seed=3)
    for phase in range(person.phases):
        facts = person.phase(phase)
        events = [MemoryEvent.build(e) for f in facts for e in f.events("ann", ts=0.0, id_prefix=f"{phase}-")]
        views = linked_views(events, 2)
        assert len(views) == 2 * len(facts)
        for view in views:
            fact = next(f for f in facts if f.relation.ask.format(v=f.value) == view.prompt)
            assert view.response.startswith(fact.relation.answer.format(v=fact.value) + " ")
            assert fact.value.lower() in view.response.removeprefix(fact.relation.answer.format(v=fact.value)).lower()
            assert view.meta["linked_to"] == f"{phase}-{fact.relation.slot}-c"
            assert view.meta["view_of"] in {f"{phase}-{fact.relation.slot}-o", f"{phase}-{fact.relation.slot}-r"}


def test_a_turn_links_only_words_its_answer_adds_to_its_question():
    assert told_words("Which sport do I do?", "You do curling every week.") == {"curling", "week"}
    memories = [turn("Where is the sport hall?", "The sport hall is on Quay Road."),
                note("The user likes every sport on television.")]
    assert linked_views(memories, 3) == []  # "sport" is asked, not told


def test_a_turn_where_the_user_tells_something_answers_no_question():
    memories = [turn("My favourite board game is Pandemic.", "Got it: you love Pandemic."),
                note("The user played Pandemic with friends.")]
    assert linked_views(memories, 2) == []
    memories[0] = turn("What is my favourite board game?", "You love Pandemic.")
    assert [v.response for v in linked_views(memories, 2)] == ["You love Pandemic. You played Pandemic with friends."]


def test_an_answer_that_tells_many_things_links_nothing():
    advice = "You usually reduce brown butter until it smells nutty, especially for apple pie."
    memories = [turn("When do I knead coconut milk?", advice),
                note("The user learned that apple pie depends on coconut milk.")]
    assert len(told_words(memories[0].prompt, advice)) > MAX_TOLD
    assert linked_views(memories, 2) == []
    memories[0] = turn("Which pie do I bake?", "You bake apple pie.")
    assert [v.response for v in linked_views(memories, 2)] == [
        "You bake apple pie. You learned that apple pie depends on coconut milk."]


def test_a_word_many_memories_name_links_nothing():
    memories = [turn("Where do I walk?", "You walk along the harbour.")]
    memories += [note(f"The user saw boat {n} in the harbour.") for n in range(MAX_NAMED_BY)]
    assert linked_views(memories, 5) == []
    assert len(linked_views(memories[:MAX_NAMED_BY], 5)) == MAX_NAMED_BY - 1


def test_links_are_capped_per_turn_in_the_order_of_the_memories():
    memories = [turn("What is my cat called?", "The cat is named Juno."),
                note("The user's cat Juno sleeps a lot."), note("Juno, the user's cat, hates rain.")]
    views = linked_views(memories, 1)
    assert [(v.prompt, v.response) for v in views] == [("What is my cat called?",
                                                         "The cat is named Juno. Your cat Juno sleeps a lot.")]


def test_with_views_counts_the_links_after_the_views_and_a_failure_costs_nothing_else(monkeypatch):
    memories = [turn("What is my cat called?", "The cat is named Juno."), note("The user's cat Juno sleeps a lot.")]
    views, counts = with_views(memories, 2, links=2)
    assert counts["linked"] == 1 and counts["views"] == len(views) - 1
    assert views[-1].meta["linked_to"] == memories[0].id

    import learner.memory.views as module

    monkeypatch.setattr(module, "linked_views", lambda events, per_turn: 1 / 0)
    views_again, counts = module.with_views(memories, 2, links=2)
    assert views_again == views[:-1]
    assert counts["no_links: failed (ZeroDivisionError)"] == 1 and counts["linked"] == 0


def test_a_negative_link_count_is_a_config_error():
    with pytest.raises(ConfigError, match="train.linked_views"):
        load_config(overrides=["train.linked_views=-1"], environ={})


def test_a_lora_run_trains_on_linked_views_and_counts_them_without_other_views(tmp_path):
    from learner.online import OnlineLearner
    from tests.conftest import TINY

    pets = [("cat", "Juno"), ("dog", "Pixel"), ("horse", "Tamsin")]
    config = load_config(overrides=TINY + ["train.views=0", "train.linked_views=2", "scheduler.count=1000000000"],
                         environ={})
    learner = OnlineLearner("ann", config, tmp_path, auto_consolidate=False)
    learner.learn_many([note(f"Rain over Lyon, day {n}.").to_dict() for n in range(40)])
    learner.consolidate("manual")  # the byte model's foundation run: no views
    learner.learn_many([e.to_dict() for pet, name in pets for e in
                        (turn(f"What is my {pet} called?", f"Your {pet} is {name}."),
                         note(f"The user's {pet} {name} sleeps a lot."))])
    result = learner.consolidate("manual")
    learner.close()
    assert result.accepted, result.reason
    assert result.metrics["views"]["linked"] == len(pets)
    assert result.metrics["views"]["views"] == 0
