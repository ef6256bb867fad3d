"""Context distillation: the base with the memory in its context teaches the model asked without it."""

import math

import pytest
import torch

from contracts.events import MemoryEvent
from learner.config import load_config
from learner.fields import ConfigError
from learner.model.encoding import collate
from learner.model.losses import lm_loss, lm_loss_by_row
from learner.online import OnlineLearner
from learner.training.distill import in_context, kl_from_base, memory_loss, question_pairs, teach, with_targets
from learner.training.rehearsal import distill_loss
from learner.memory.views import views_of
from learner.training.trainer import Trainer
from tests.conftest import TINY


def turn(prompt: str, response: str) -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": 1.0, "kind": "conversation", "prompt": prompt,
                              "response": response})


def note(text: str) -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": 1.0, "kind": "observation", "text": text})


@pytest.fixture(scope="module")
def byte_live():
    config = load_config(overrides=TINY, environ={})
    torch.manual_seed(0)
    return Trainer(config.model).checkout(None, None, config)


def taught_batch(live, events):
    examples = [live.encoder.encode(e) for e in events]
    given = teach(live, live.encoder, [(i, e, e) for i, e in enumerate(events)], examples)
    assert given == len(events)
    batch = collate(examples, live.tokenizer.pad_id)
    return batch, with_targets(batch, examples)


def test_rows_without_teacher_targets_train_on_their_tokens_as_before(byte_live):
    events = [turn("Where do I live?", "On Rowan Street."), turn("Cat?", "Juno.")]
    batch = collate([byte_live.encoder.encode(e) for e in events], byte_live.tokenizer.pad_id)
    with torch.no_grad():
        assert memory_loss(byte_live.model, batch, torch.tensor([False, False]), keep_ce=False) == \
            pytest.approx(float(lm_loss(byte_live.model, batch)), rel=1e-5)


def test_distilled_rows_train_on_the_teachers_distribution_and_beside_their_tokens_when_asked(byte_live):
    batch, rows = taught_batch(byte_live, [turn("Where do I live?", "On Rowan Street."), turn("Cat?", "Juno.")])
    assert rows.tolist() == [True, True]
    with torch.no_grad():
        kl = float(distill_loss(byte_live.model, batch))
        ce = float(lm_loss(byte_live.model, batch))
        assert memory_loss(byte_live.model, batch, rows, keep_ce=False) == pytest.approx(kl, rel=1e-5)
        assert memory_loss(byte_live.model, batch, rows, keep_ce=True) == pytest.approx((kl + ce) / 2, rel=1e-5)
    assert kl > 0  # the teacher saw the memory, the student does not


def test_the_teacher_is_asked_with_the_memory_in_front_and_its_adapter_off(byte_live):
    memory = note("The user's cat is Juno.")
    view = views_of(memory, 1)[0]
    asked = in_context(view, memory)
    assert asked.prompt.endswith(view.prompt) and memory.text in asked.prompt and asked.response == view.response
    examples = [byte_live.encoder.encode(view)]
    teach(byte_live, byte_live.encoder, [(0, view, memory)], examples)
    byte_live.start_lora()
    with torch.no_grad():
        for p in byte_live.trainable_parameters(False).values():
            p.add_(0.5)  # an adapter that changes the answers
    again = [byte_live.encoder.encode(view)]
    teach(byte_live, byte_live.encoder, [(0, view, memory)], again)
    assert torch.equal(examples[0]["target_ids"], again[0]["target_ids"])
    assert torch.allclose(examples[0]["target_logp"], again[0]["target_logp"], atol=1e-5)


def test_question_examples_are_the_turns_and_the_question_views_each_with_its_memory():
    memory, asked = note("The user's dog is Pixel."), turn("What's my dog called?", "Your dog is Pixel.")
    views = views_of(memory, 3)
    pairs = question_pairs([memory, asked], views)
    assert [(i, q.prompt, m.id) for i, q, m in pairs] == [(1, asked.prompt, asked.id)] + \
        [(2 + j, v.prompt, memory.id) for j, v in enumerate(views) if v.prompt is not None]


def test_an_unknown_objective_is_a_config_error():
    with pytest.raises(ConfigError, match="train.objective"):
        load_config(overrides=["train.objective=kl"], environ={})


def test_a_lora_run_distils_its_question_examples(tmp_path):
    facts = [("sister", "Odile"), ("dog", "Pixel"), ("street", "Rowan"), ("car", "Kia")]
    turns = [turn(f"Who or what is my {slot}?", f"Your {slot} is {value}.").to_dict() for slot, value in facts]
    config = load_config(overrides=TINY + ["train.objective=distill", "train.views=2",
                                           "scheduler.count=1000000000"], environ={})
    learner = OnlineLearner("ann", config, tmp_path, auto_consolidate=False)
    learner.learn_many([{**t, "ts": 1.0 + i} for i, t in enumerate(turns * 15)])
    assert "distilled_examples" not in learner.consolidate("manual").metrics  # the full first run
    learner.learn_many([note(f"Observation: the user's {s} is still {v}.").to_dict() for s, v in facts])
    result = learner.consolidate("manual")
    learner.close()
    assert result.accepted, result.reason
    m = result.metrics
    assert m["objective"] == "distill" and m["teach_s"] >= 0
    questions = m["views"]["with_views"]  # each note's first view is a question; the replayed turns are too
    assert m["distilled_examples"] >= questions > 0


def test_the_distance_from_the_base_is_zero_for_an_untrained_adapter_and_grows_with_it(tmp_path):
    config = load_config(overrides=TINY, environ={})
    torch.manual_seed(0)
    live = Trainer(config.model).checkout(None, None, config)
    examples = [live.encoder.encode(turn("Where do I live?", "On Rowan Street."))]
    assert math.isnan(kl_from_base(live, examples))  # no adapter: nothing to compare
    live.start_lora()  # B starts at zero: the adapter changes nothing yet
    assert kl_from_base(live, examples) == pytest.approx(0.0, abs=1e-6)
    distances = []
    for size in (0.05, 0.5):
        with torch.no_grad():
            for name, p in live.trainable_parameters(False).items():
                p.fill_(size)
        distances.append(kl_from_base(live, examples))
    assert 0 < distances[0] < distances[1]


def test_each_rows_loss_weighs_into_the_batch_loss_by_its_labelled_tokens(byte_live):
    events = [turn("Where do I live?", "On Rowan Street, by the old mill."), note("My cat is Juno.")]
    examples = [byte_live.encoder.encode(e) for e in events]
    batch = collate(examples, byte_live.tokenizer.pad_id)
    with torch.no_grad():
        mean, rows = lm_loss_by_row(byte_live.model, batch)
        alone = [float(lm_loss(byte_live.model, collate([ex], byte_live.tokenizer.pad_id))) for ex in examples]
    labelled = (batch["labels"][:, 1:] != -100).sum(dim=1).tolist()
    assert rows.tolist() == pytest.approx(alone, rel=1e-4)
    assert float(mean) == pytest.approx(sum(r * n for r, n in zip(alone, labelled)) / sum(labelled), rel=1e-4)
