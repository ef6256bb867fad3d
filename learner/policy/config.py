"""Settings of the scheduler (``[scheduler]``) and the quality gate (``[quality]``)."""

from __future__ import annotations

from dataclasses import dataclass

from learner.fields import require, setting

__all__ = ["SchedulerConfig", "QualityConfig"]


@dataclass
class SchedulerConfig:
    """The ``[scheduler]`` section: when a consolidation is due.

    >>> SchedulerConfig().count, SchedulerConfig(interval_s=None).interval_s
    (300, None)
    >>> SchedulerConfig(count=0)
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: scheduler.count = 0: must be at least 1
    """

    count: int = setting("Consolidate after this many new events.", 300)
    interval_s: float | None = setting("Consolidate after this many seconds (event time) since the last one.", 86400.0)
    min_examples: int = setting("Fewest new events for a time or drift trigger.", 32)
    consolidate_on_drift: bool = setting("Consolidate early when drift is detected.", True)
    after_drift: int = setting("New events to wait for after a drift alert before its run, so the run sees the new "
                             "distribution (a run on the first few dozen is refused by the gate).", 100)

    def __post_init__(self) -> None:
        require(self.count >= 1, "scheduler.count", self.count, "must be at least 1")
        require(self.min_examples >= 1, "scheduler.min_examples", self.min_examples, "must be at least 1")
        require(self.after_drift >= 0, "scheduler.after_drift", self.after_drift, "must be at least 0")
        require(self.interval_s is None or self.interval_s > 0, "scheduler.interval_s", self.interval_s,
               "must be positive or unset")


@dataclass
class QualityConfig:
    """The ``[quality]`` section: what happens to trivial memories.

    >>> QualityConfig().mode
    'drop'
    >>> QualityConfig(mode="keep")
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: quality.mode = 'keep': must be drop, flag or off
    """

    mode: str = setting("What happens to trivial memories ('ok', 'thanks', too few letters): 'drop' (not learned, "
                      "counted), 'flag' (learned, counted) or 'off'.", "drop")
    min_chars: int = setting("Memories whose text (or response) has fewer letters or digits than this fail the gate.",
                           8)

    def __post_init__(self) -> None:
        require(self.mode in ("drop", "flag", "off"), "quality.mode", self.mode, "must be drop, flag or off")
        require(self.min_chars >= 0, "quality.min_chars", self.min_chars, "must not be negative")
