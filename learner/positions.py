"""Reading a source exactly once: a file's lines or a partition's offsets, through one convention.

Each profile's state holds, per source (``file:PATH``, ``kafka:TOPIC:PARTITION``), the next position it
has not applied; an event below it was learned before a crash, a rerun or a rebalance, and is skipped.
"""

from __future__ import annotations

from typing import Any

from contracts.events import MemoryEvent
from learner.online import OnlineLearner, Step

__all__ = ["covers", "learn_at"]


def learn_at(learner: OnlineLearner, source: str, position: int, event: MemoryEvent | dict[str, Any]) -> Step | None:
    """Learn ``event``, read at ``position`` (a line of a file, an offset of a partition) of ``source``,
    unless the learner's state covers it already; None then. Every source records the *next* position
    it has not applied, set before learning, so a snapshot taken inside the step (a consolidation's)
    covers the event.

    >>> import tempfile
    >>> from learner.config import load_config
    >>> cfg = load_config(environ={}, overrides=["model.base=memstream-byte", "drift.enabled=false"])
    >>> learner = OnlineLearner("ann", cfg, state_dir=tempfile.mkdtemp())
    >>> note = {"profile": "ann", "ts": 0.0, "kind": "note", "text": "The spare key is under the blue pot."}
    >>> learn_at(learner, "file:notes.jsonl", 0, note).events_seen, learner.sources
    (1, {'file:notes.jsonl': 1})
    >>> learn_at(learner, "file:notes.jsonl", 0, note) is None
    True
    """
    if covers(learner, source, position):
        return None
    learner.sources[source] = position + 1
    return learner.learn_one(event)


def covers(learner: OnlineLearner, source: str, position: int) -> bool:
    """Whether the learner's state already holds the event at ``position`` of ``source``."""
    return position < learner.sources.get(source, 0)
