"""memstream's learning engine, with no Kafka in it: usable from a notebook or a script on a JSONL file.

Families, each owning its config dataclass:

- :mod:`learner.memory` — replay buffers, the dedupe window, the learner's state and its outbox;
- :mod:`learner.drift` — text features, the KL and surprise detectors, their calibration;
- :mod:`learner.policy` — when to consolidate, which memories to learn, whether a version passes;
- :mod:`learner.model` — bases, loading, the adapted model, encoding and losses, generation, export;
- :mod:`learner.training` — a run's plan and result, the loop, EWC, base rehearsal, the trainer;
- :mod:`learner.store` — durable files, locks, the registry and the version layout.

At the top: :class:`~learner.online.OnlineLearner` (``learn_one``, ``learn_many``, ``consolidate``,
``save_state``, ``load_state``, ``model``), the config composition (:mod:`learner.config`) and the
interfaces (:mod:`learner.types`). The names below are imported on first use, so ``import learner``
loads neither torch nor river.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["LearnerConfig", "OnlineLearner", "load_config"]

_WHERE = {"LearnerConfig": "learner.config", "load_config": "learner.config", "OnlineLearner": "learner.online"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'learner' has no attribute {name!r}")
