"""memstream's learning engine: replay, drift, EWC-regularized LoRA, registry. No Kafka in here.

The names below are imported on first use, so that ``import learner.events`` (what producers and
consumers need) loads neither torch nor river.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["InvalidEvent", "LearnerConfig", "MemoryEvent", "OnlineLearner", "load_config"]

_WHERE = {"InvalidEvent": "learner.events", "MemoryEvent": "learner.events", "LearnerConfig": "learner.config",
          "load_config": "learner.config", "OnlineLearner": "learner.online"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'learner' has no attribute {name!r}")
