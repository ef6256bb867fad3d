"""Wrong answers pushed down: which answers are wrong, the one token each pushes down, and a run that trains on them."""

import re

import pytest
import torch

from contracts.events import MemoryEvent
from learner.config import ModelConfig, load_config
from learner.fields import ConfigError
from learner.memory.views import with_views
from learner.model.encoding import IGNORE, Encoder, collate
from learner.model.loading import build_default_model
from learner.model.tokenizers import ByteTokenizer
from learner.online import OnlineLearner
from learner.training.contrast import unlikelihood_example, unlikelihood_loss, wrong_answers
from memstream.samples.facts import make_person
from tests.conftest import TINY


def turn(prompt: str, response: str) -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": 5.0, "kind": "conversation", "prompt": prompt,
                              "response": response})


def test_a_wrong_answer_almost_never_holds_the_value_its_question_asks_for():
    missed = []
    for seed in range(4):
        person = make_person(seed=seed, phases=3, facts_per_phase=10)
        told = [(fact, MemoryEvent.build(e)) for fact in person.facts for e in fact.events("ann", ts=0.0)]
        memories = [event for _, event in told]
        views, _ = with_views(memories, 3)
        examples = memories + views
        value_of = {event.id: fact.value.lower() for fact, event in told}
        choices = wrong_answers(memories, examples)
        turns = [i for i, e in enumerate(memories) if e.prompt is not None]
        assert set(turns) <= set(choices)  # every conversation turn gets wrong answers
        statements = {w for wrong in choices.values() for w in wrong} & {e.response for e in memories}
        for index, wrong in choices.items():
            example = examples[index]
            asked = re.fullmatch(r"What do you know about (.+)\?", example.prompt)
            value = asked.group(1).lower() if asked else value_of[example.id]  # the name asked about, or the told value
            assert value in example.response.lower()
            assert not [w for w in wrong if w in statements and value in w.lower()], example  # never another wording
            if [w for w in wrong if value in w.lower()]:
                missed.append(example.response)
        # among them, another fact's value in the turn's own words
        first = memories[turns[0]]
        assert len([w for w in choices[turns[0]] if w.split()[:2] == first.response.split()[:2]]) >= 10
    # a value that is also an everyday word of other memories ("train") is the one the words cannot tell
    assert missed == ["You go to work by train."]


def test_a_general_question_has_no_wrong_answer():
    examples = [turn("What do you know about me?", "Your cat is Juno."), turn("Where did I grow up?", "In Ghent.")]
    assert set(wrong_answers(examples, examples)) == {1}


def test_a_wrong_answer_pushes_down_the_one_token_where_it_leaves_the_right_one():
    encoder = Encoder(ByteTokenizer(), max_len=64)
    question = turn("Who is my sister?", "Your sister is Odile.")
    right = encoder.encode(question)
    pushed = unlikelihood_example(encoder, question, "Your sister is Emrys.", right)
    labelled = [i for i, label in enumerate(pushed["labels"].tolist()) if label != IGNORE]
    assert labelled == [len(pushed["labels"]) - 1]  # the row ends at its one labelled token
    at = labelled[0]
    assert right["input_ids"][:at].tolist() == pushed["input_ids"][:at].tolist()
    token = ByteTokenizer().decode
    assert token([int(pushed["input_ids"][at])]) == "E" and token([int(right["input_ids"][at])]) == "O"
    assert unlikelihood_example(encoder, question, "Your sister is Odile.", right) is None


def test_a_wrong_answer_cut_after_its_pushed_token_has_the_loss_of_the_whole_answer():
    torch.manual_seed(0)
    model = build_default_model(ModelConfig(base="memstream-byte", d_model=32, n_layers=2, n_heads=2, d_ff=64))
    encoder = Encoder(ByteTokenizer(), max_len=64)
    question = turn("Who is my sister?", "Your sister is Odile.")
    pushed = unlikelihood_example(encoder, question, "Your sister is Emrys, and she lives in Ghent.",
                                  encoder.encode(question))
    whole = encoder.encode(MemoryEvent.build({**question.to_dict(), "id": None,
                                              "response": "Your sister is Emrys, and she lives in Ghent."}))
    at = len(pushed["labels"]) - 1
    assert len(whole["input_ids"]) > at + 10 and torch.equal(whole["input_ids"][:at + 1], pushed["input_ids"])
    whole_labels = torch.full_like(whole["labels"], IGNORE)
    whole_labels[at] = whole["input_ids"][at]
    with torch.no_grad():
        cut = unlikelihood_loss(model, collate([pushed], 0))
        full = unlikelihood_loss(model, collate([{"input_ids": whole["input_ids"], "labels": whole_labels}], 0))
    assert torch.allclose(cut, full, atol=1e-6), (cut, full)


def test_unlikelihood_lowers_the_probability_of_the_token_it_pushes_down():
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(8, 8)
            self.head = torch.nn.Linear(8, 8)

        def forward(self, input_ids, **_):
            return type("Out", (), {"logits": self.head(self.embed(input_ids))})()

    model = Tiny()
    batch = {"input_ids": torch.tensor([[1, 5]]), "labels": torch.tensor([[IGNORE, 5]])}

    @torch.no_grad()
    def p_pushed() -> float:
        return float(torch.softmax(model(batch["input_ids"]).logits[0, 0], -1)[5])

    before = p_pushed()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(5):
        unlikelihood_loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert p_pushed() < before / 2


def test_a_lora_run_pushes_down_wrong_answers_and_reports_how_many_questions(tmp_path):
    facts = [("Where did I grow up?", "You grew up in Ghent."), ("Who is my sister?", "Your sister is Odile."),
             ("What is my dog called?", "Your dog is Pixel."), ("What car do I drive?", "You drive a Kia.")]
    runs = {}
    for weight in (0.0, 1.0):
        config = load_config(overrides=TINY + [f"train.contrast={weight}", "scheduler.count=1000000000"], environ={})
        learner = OnlineLearner("ann", config, tmp_path / f"contrast{weight}", auto_consolidate=False)
        learner.learn_many([turn(p, r).to_dict() for p, r in facts * 15])
        learner.consolidate("manual")  # the byte model's foundation run
        learner.learn_many([turn(p.replace("?", " again?"), r).to_dict() for p, r in facts])
        runs[weight] = learner.consolidate("manual")
        learner.close()
    assert runs[0.0].accepted and runs[1.0].accepted, (runs[0.0].reason, runs[1.0].reason)
    assert "contrast_questions" not in runs[0.0].metrics
    assert runs[1.0].metrics["contrast_questions"] == runs[1.0].samples_new + runs[1.0].samples_replay
    assert runs[1.0].metrics["tokens_real"] > runs[0.0].metrics["tokens_real"]  # the wrong answers are trained on


def test_a_negative_contrast_weight_is_a_config_error():
    with pytest.raises(ConfigError, match="train.contrast"):
        load_config(overrides=["train.contrast=-1"], environ={})
