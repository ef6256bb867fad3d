"""Which old memories a run replays: planned from the learner state, counted by accepted runs (pure logic)."""

import pytest

from contracts.events import MemoryEvent
from learner.config import load_config
from learner.memory.state import LearnerState
from learner.training.planning import plan_run


def _note(i: int) -> MemoryEvent:
    return MemoryEvent.build({"profile": "ann", "ts": float(i), "kind": "note", "text": f"The user noted fact {i}."})


def _replays_before_fewer(selection: str) -> list[tuple[int, int]]:
    """Six runs of 10 new memories over 40 old: for each run, the most replays among the memories it
    replayed and the fewest among the old ones it could have replayed and left."""
    cfg = load_config(environ={}, overrides=["model.base=memstream-byte", "train.probe_size=4",
                                             f"train.replay_selection={selection}"])
    state = LearnerState("ann", cfg)
    for i in range(40):
        state.remember(_note(i))
    state.recent.remove_where(lambda e: True)
    seen = []
    for run in range(6):
        for i in range(40 + 10 * run, 50 + 10 * run):
            state.remember(_note(i))
        plan = plan_run(state, cfg.train, "count", "lora", parent_version=1)
        chosen = {e.id for e in plan.replay}
        taken = chosen | {e.id for e in plan.new} | {e.id for e in plan.probe}
        left = [e.id for e in state.reservoir.items if e.id not in taken]
        seen.append((max(state.replayed.get(i, 0) for i in chosen),
                     min((state.replayed.get(i, 0) for i in left), default=99)))
        state.count_replayed(plan.replay)
        state.recent.remove_where(lambda e: True)
    return seen


def test_least_replayed_selection_replays_no_memory_again_before_the_others():
    assert all(most <= fewest for most, fewest in _replays_before_fewer("least-replayed"))


def test_random_selection_replays_some_memories_again_before_others():
    assert any(most > fewest for most, fewest in _replays_before_fewer("random"))


def test_replay_counts_survive_a_snapshot_and_forget_memories_that_left_the_reservoir():
    cfg = load_config(environ={}, overrides=["model.base=memstream-byte", "replay.capacity=5"])
    state = LearnerState("ann", cfg)
    notes = [_note(i) for i in range(5)]
    for note in notes:
        state.remember(note)
    state.count_replayed(notes[:2])
    restored = LearnerState("ann", cfg)
    restored.restore(state.snapshot())
    assert restored.replayed == {notes[0].id: 1, notes[1].id: 1}
    for i in range(5, 200):
        restored.remember(_note(i))
    restored.count_replayed([])
    kept = {e.id for e in restored.reservoir.items}
    assert notes[0].id not in kept
    assert restored.replayed == {i: 1 for i in (notes[0].id, notes[1].id) if i in kept}


def test_an_unknown_replay_selection_is_refused_in_one_line():
    with pytest.raises(ValueError, match="train.replay_selection = 'oldest': must be one of random, least-replayed"):
        load_config(environ={}, overrides=["train.replay_selection=oldest"])
