"""Settings of the replay buffers, the dedupe window and base rehearsal (``[replay]``)."""

from __future__ import annotations

from dataclasses import dataclass

from learner.fields import require, setting

__all__ = ["ReplayConfig"]


@dataclass
class ReplayConfig:
    """The ``[replay]`` section: the reservoir, the recent buffer, the dedupe window and base rehearsal.

    >>> ReplayConfig().capacity, ReplayConfig(strategy="surprise").strategy
    (2000, 'surprise')
    >>> ReplayConfig(capacity=0)
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: replay.capacity = 0: must be at least 1
    """

    capacity: int = setting("Events kept in the reservoir replay buffer per profile.", 2000)
    strategy: str = setting("'uniform' (Algorithm R: every event equally likely) or 'surprise' (weighted by the "
                          "event's loss under the current version; one forward pass per event).", "uniform")
    recent_capacity: int = setting("Most new events kept between consolidations (oldest dropped first).", 2000)
    seed: int = setting("Seed of the reservoir's random generator.", 0)
    dedupe_window: int = setting("Event ids remembered per profile: an event whose id is among the last this many "
                               "is a re-publication and is not learned twice (0: off).", 20000)
    base_rehearsal: float = setting("Share of each LoRA step's examples that are the base model's own text (sampled "
                                  "once per base), trained to keep the base's next-token distribution: keeps what "
                                  "the base could do (0: off; the byte model has none).", 0.25)
    base_samples: int = setting("Texts and answers sampled from the base model for rehearsal (the first "
                              "train.base_probe_size of them probe the gate).", 128)
    rehearsal_weight: float = setting("Weight of the rehearsal's KL (from the base's next-token distribution) in the "
                                    "loss.", 1.0)
    rehearsal_positions: int = setting("Labelled positions of each rehearsal sample a step trains on (its first "
                                       "this many, and the tokens before them; 0: all): bounds what the rehearsal "
                                       "computes.", 0)

    def __post_init__(self) -> None:
        require(self.capacity >= 1, "replay.capacity", self.capacity, "must be at least 1")
        require(self.dedupe_window >= 0, "replay.dedupe_window", self.dedupe_window, "must not be negative")
        require(self.strategy in ("uniform", "surprise"), "replay.strategy", self.strategy,
               "must be 'uniform' or 'surprise'")
        require(self.recent_capacity >= 1, "replay.recent_capacity", self.recent_capacity, "must be at least 1")
        require(0 <= self.base_rehearsal < 1, "replay.base_rehearsal", self.base_rehearsal, "must be in [0, 1)")
        require(self.rehearsal_positions >= 0, "replay.rehearsal_positions", self.rehearsal_positions,
                "must not be negative")
        require(self.base_samples >= 8, "replay.base_samples", self.base_samples, "must be at least 8")
