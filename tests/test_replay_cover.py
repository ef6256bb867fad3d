"""Replay chosen to cover the most things: one memory of each old fact before a second wording of any."""

import math
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from contracts.events import MemoryEvent
from learner.config import load_config
from learner.fields import ConfigError
from learner.memory.coverage import stems, widest_cover
from learner.memory.state import LearnerState
from learner.training.planning import plan_run
from memstream.samples.diary import make_diary_person
from memstream.samples.facts import make_person


def _phases(people: str, seed: int):
    """The recall benchmark's person of ``people``: each phase's memory events (three per fact), and facts per phase."""
    phases, facts = (3, 10) if people == "facts" else (4, 8)
    person = (make_person if people == "facts" else make_diary_person)(seed, phases, facts)
    return [[MemoryEvent.build(e) for i, fact in enumerate(person.phase(phase))
             for e in fact.events("ann", 100.0 * phase + i)] for phase in range(phases)], facts


@pytest.mark.parametrize("people", ["facts", "diary"])
@pytest.mark.parametrize("seed", [0, 1])
def test_covering_replay_takes_one_memory_of_every_fact_before_a_second_wording(people, seed):
    phases, facts = _phases(people, seed)
    told = phases[0]  # each fact told three ways
    chosen = widest_cover(told, facts, random.Random(seed))
    assert len(chosen) == facts
    assert len({e.meta["fact"] for e in chosen}) == facts
    assert len({e.meta["fact"] for e in random.Random(seed).sample(told, facts)}) < facts  # what a draw gives


def _plan(cover: float, seed: int):
    cfg = load_config(environ={}, overrides=["model.base=memstream-byte", f"train.replay_cover={cover}"])
    state = LearnerState("ann", cfg)
    phases, _ = _phases("facts", seed)
    for event in phases[0] + phases[1]:
        state.reservoir.add(event)
    for event in phases[2]:
        state.reservoir.add(event)
        state.recent.add(event)
    return plan_run(state, cfg.train, "count", "lora", parent_version=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_covering_plan_replays_more_of_the_old_facts_than_a_random_draw(seed):
    drawn, covering = _plan(0.0, seed), _plan(1.0, seed)
    assert len(covering.replay) == len(drawn.replay) == 20
    for plan in (drawn, covering):
        assert not {e.id for e in plan.replay} & {e.id for e in plan.new + plan.probe}
        assert len({e.id for e in plan.replay}) == len(plan.replay)
    facts = [len({e.meta["fact"] for e in plan.replay}) for plan in (drawn, covering)]
    print(f"old facts replayed: drawn {facts[0]}, covering {facts[1]} of 20")
    assert facts[1] >= facts[0] + 2


def test_a_covering_plan_is_the_same_whatever_the_hash_seed():
    script = ("from tests.test_replay_cover import _plan\n"
              "print(' '.join(e.id for e in _plan(1.0, 2).replay))")
    replays = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}).stdout for hash_seed in (1, 2, 3)}
    assert len(replays) == 1, replays


def test_a_cover_share_outside_zero_to_one_is_a_config_error():
    with pytest.raises(ConfigError, match="train.replay_cover = 1.5: must be in"):
        load_config(environ={}, overrides=["train.replay_cover=1.5"])

def _plain_greedy(old, k, rng):
    """Each turn, every memory's gain summed again: what :func:`widest_cover` must pick, in the same order."""
    order = list(old)
    rng.shuffle(order)
    words = [stems(e) for e in order]
    named_by = Counter(s for each in words for s in each)
    weight = {s: math.log((len(order) + 1) / n) for s, n in named_by.items()}
    covered, chosen, left = set(), [], list(range(len(order)))
    while left and len(chosen) < k:
        best = max(left, key=lambda i: math.fsum(weight[s] for s in words[i] - covered))
        chosen.append(best)
        left.remove(best)
        covered |= words[best]
    return [order[i] for i in chosen]


def test_covering_replay_picks_what_the_plain_greedy_pass_picks():
    memories = [e for seed in range(4) for phase in _phases("facts", seed)[0] for e in phase]
    memories = [MemoryEvent.build({**e.to_dict(), "id": f"{i}"}) for i, e in enumerate(memories)]
    rng = random.Random(5)
    for trial in range(12):
        old, k = rng.sample(memories, rng.randrange(5, 200)), rng.randrange(1, 60)
        assert [e.id for e in widest_cover(old, k, random.Random(trial))] == \
               [e.id for e in _plain_greedy(old, k, random.Random(trial))]


def test_a_memory_whose_statement_cannot_be_made_is_still_covered_by_its_own_words(monkeypatch):
    from learner.memory import views

    def broken(event):
        raise ValueError("no statement")

    monkeypatch.setattr(views, "statement_of", broken)
    told = _phases("facts", 0)[0][0]
    assert len({e.meta["fact"] for e in widest_cover(told, 10, random.Random(0))}) == 10
