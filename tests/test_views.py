"""Training views of a memory: the statement said to the user, in the user's words, as answers to questions."""

import pytest

from contracts.events import MemoryEvent
from learner.config import load_config
from learner.fields import ConfigError
from learner.memory.views import MAX_VIEW_WORDS, first_person, second_person, views_of, why_no_view, with_views
from learner.online import OnlineLearner
from tests.conftest import TINY


def note(text: str, kind: str = "observation") -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": 5.0, "kind": kind, "text": text})


def turn(prompt: str, response: str) -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": 5.0, "kind": "conversation", "prompt": prompt,
                              "response": response})


@pytest.mark.parametrize("text, to_user, in_own_words", [
    ("Observation: the user's sister is named Odile.", "Your sister is named Odile.", "My sister is named Odile."),
    ("the user walks their dog every morning.", "You walk your dog every morning.", "I walk my dog every morning."),
    ("The user watches every Celtic match.", "You watch every Celtic match.", "I watch every Celtic match."),
    ("The user carries a spare key.", "You carry a spare key.", "I carry a spare key."),
    ("Reflection: the user has wanted to see Porto for years.", "You have wanted to see Porto for years.",
     "I have wanted to see Porto for years."),
    ("The user is allergic to sesame.", "You are allergic to sesame.", "I am allergic to sesame."),
    ("Note: the user was raised in Ghent, where they grew up happy.", "You were raised in Ghent, where you grew "
     "up happy.", "I was raised in Ghent, where I grew up happy."),
    ("Prudence, the user's neighbour, trusts them.", "Prudence, your neighbour, trusts you.",
     "Prudence, my neighbour, trusts me."),
    ("Learning Welsh makes the user feel young.", "Learning Welsh makes you feel young.",
     "Learning Welsh makes me feel young."),
])
def test_a_note_about_the_user_is_said_to_them_and_in_their_own_words(text, to_user, in_own_words):
    assert second_person(text) == to_user
    assert first_person(text) == in_own_words


def test_an_answer_in_a_conversation_is_already_said_to_the_user():
    assert first_person("You fly with Finnair, and your partner Jonas flies with you.") == \
        "I fly with Finnair, and my partner Jonas flies with me."


def test_a_note_in_the_users_own_words_is_turned_round():
    views = views_of(note("My sister Odile visits me when I am ill.", "note"), 2)
    assert [v.response or v.text for v in views] == ["Your sister Odile visits you when you are ill.",
                                                      "My sister Odile visits me when I am ill."]


def test_views_answer_general_and_reverse_questions_and_never_the_held_out_ones():
    views = views_of(note("Observation: the user's doctor is Dr Okonkwo."), 8)
    prompts = [v.prompt for v in views if v.prompt is not None]
    assert "What do you know about Dr Okonkwo?" in prompts  # the reverse question names the fact
    assert len(prompts) == len(set(prompts)) == 7  # every general question once, and the reverse one
    assert all(v.response == "Your doctor is Dr Okonkwo." for v in views if v.prompt is not None)
    assert [v.text for v in views if v.text is not None] == ["My doctor is Dr Okonkwo."]
    assert not any("doctor" in p for p in prompts)  # no view asks about the relation itself


def test_views_are_the_same_for_the_same_event_and_point_back_to_it():
    event = note("Observation: the user's cat Juno sleeps on the radiator.")
    first, again = views_of(event, 4), views_of(MemoryEvent.from_dict(event.to_dict()), 4)
    assert first == again
    assert {v.meta["view_of"] for v in first} == {event.id}
    assert {(v.profile, v.ts, v.kind) for v in first} == {("ann", 5.0, "observation")}
    other = views_of(note("Observation: the user's cat Juno naps on the radiator."), 4)
    assert [v.prompt for v in other] != [v.prompt for v in first] or other != first


def test_a_conversation_keeps_its_own_turn_and_gets_text_views_first():
    views = views_of(turn("What did we name the cat?", "The cat is named Clementine."), 3)
    assert [v.text for v in views[:2]] == ["The cat is named Clementine.", "The cat is named Clementine."]
    assert views[2].prompt == "What do you know about Clementine?"


@pytest.mark.parametrize("event, reason", [
    (note("ok", "note"), "a single word"),
    (note("Rain over Lyon all afternoon.", "note"), "not about the user"),
    (turn("Write a haiku about rain.", "Grey rain on the roofs, the gutters sing all night long."),
     "not about the user"),
    (note("The user " + "really " * MAX_VIEW_WORDS + "likes tea.", "note"), f"longer than {MAX_VIEW_WORDS} words"),
])
def test_a_memory_without_a_usable_view_trains_as_it_is_with_the_reason_counted(event, reason):
    assert why_no_view(event) == reason
    assert views_of(event, 5) == []
    views, counts = with_views([event, note("The user's car is a Kia.")], 2)
    assert counts == {"views": 2, "with_views": 1, f"no_view: {reason}": 1}
    assert [v.meta["view_of"] for v in views] == [note("The user's car is a Kia.").id] * 2


def test_no_views_are_made_when_none_are_asked_for():
    assert with_views([note("The user's car is a Kia.")], 0) == ([], {"views": 0, "with_views": 0})


def test_a_negative_view_count_is_a_config_error():
    with pytest.raises(ConfigError, match="train.views"):
        load_config(overrides=["train.views=-1"], environ={})


def test_a_lora_run_trains_on_the_views_and_reports_them(tmp_path):
    facts = [f"Observation: the user's {slot} is {value}." for slot, value in
             [("sister", "Odile"), ("dog", "Pixel"), ("street", "Rowan"), ("car", "Kia")]]
    events = [note(text).to_dict() for text in facts * 15] + [note("Rain over Lyon.", "note").to_dict()]
    runs = {}
    for views in (0, 3):
        config = load_config(overrides=TINY + [f"train.views={views}", "scheduler.count=1000000000"], environ={})
        learner = OnlineLearner("ann", config, tmp_path / f"views{views}", auto_consolidate=False)
        learner.learn_many(events)
        learner.consolidate("manual")  # the byte model's foundation run: no views
        learner.learn_many([note(text.replace(".", " today.")).to_dict() for text in facts])
        runs[views] = learner.consolidate("manual")
        learner.close()
    assert runs[0].accepted and runs[3].accepted, (runs[0].reason, runs[3].reason)
    assert "views" not in runs[0].metrics
    counts = runs[3].metrics["views"]
    trained = runs[3].samples_new + runs[3].samples_replay
    assert counts["with_views"] + sum(v for k, v in counts.items() if k.startswith("no_view")) == trained
    assert counts["views"] == 3 * counts["with_views"] > 0
    assert runs[3].steps > runs[0].steps  # the views are trained, not just counted


def test_a_view_that_cannot_be_made_leaves_its_memory_to_train_as_it_is(monkeypatch):
    import learner.memory.views as views

    def broken(event, count):
        if "Kia" in event.text:
            raise RuntimeError("template failure")
        return real(event, count)

    real = views.views_of
    monkeypatch.setattr(views, "views_of", broken)
    made, counts = views.with_views([note("The user's car is a Kia."), note("The user's cat is Juno.")], 2)
    assert counts == {"views": 2, "with_views": 1, "no_view: failed (RuntimeError)": 1}
    assert {v.meta["view_of"] for v in made} == {note("The user's cat is Juno.").id}
