"""memstream's learning engine: replay, drift, EWC-regularized LoRA, registry. No Kafka in here."""

from learner.config import LearnerConfig, load_config
from learner.events import InvalidEvent, MemoryEvent
from learner.online import OnlineLearner

__all__ = ["InvalidEvent", "LearnerConfig", "MemoryEvent", "OnlineLearner", "load_config"]
