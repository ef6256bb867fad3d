"""Where a run is: its learning-rate schedule, the progress line it prints, and the seconds of each part."""

from __future__ import annotations

import math
import time

__all__ = ["RunClock", "capped_note", "lr_at", "progress_line", "schedule_steps"]


def lr_at(step: float, total: int, peak: float, warmup_frac: float, min_ratio: float) -> float:
    """Linear warmup then cosine decay to ``min_ratio · peak``.

    >>> [round(lr_at(s, 10, 1.0, 0.2, 0.1), 3) for s in (0, 1, 2, 6, 9)]
    [0.5, 1.0, 1.0, 0.55, 0.134]
    """
    warmup = max(1, int(round(warmup_frac * total))) if warmup_frac > 0 else 0
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def schedule_steps(steps_per_epoch: int, epochs: int, max_steps: int) -> int:
    """The run's optimizer steps: every epoch's, up to ``max_steps`` (0: no cap).

    >>> schedule_steps(20, 5, 400), schedule_steps(100, 5, 400), schedule_steps(100, 5, 0)
    (100, 400, 500)
    """
    total = steps_per_epoch * epochs
    return min(total, max_steps) if max_steps else total


def capped_note(steps_per_epoch: int, epochs: int, max_steps: int) -> str | None:
    """What a run says when ``train.max_steps`` cuts its epochs short; None when it does not.

    >>> capped_note(100, 5, 400)
    '100 steps an epoch × 5 epochs capped at train.max_steps = 400: 4.0 epochs'
    >>> capped_note(20, 5, 400) is None
    True
    """
    total = schedule_steps(steps_per_epoch, epochs, max_steps)
    if total == steps_per_epoch * epochs:
        return None
    return (f"{steps_per_epoch} steps an epoch × {epochs} epochs capped at train.max_steps = {max_steps}: "
            f"{total / steps_per_epoch:.1f} epochs")


def progress_line(tokens: int, done: float, total: int, seconds: float) -> str:
    """Tokens per second so far, and the time the rest of the schedule should take (``done`` of its
    ``total`` steps are behind; with examples resting, the schedule runs ahead of the steps taken).

    >>> progress_line(1200, 10, 40, 6.0)
    '200 tokens/s, ETA 18 s'
    """
    return f"{tokens / seconds:.0f} tokens/s, ETA {seconds / done * max(0.0, total - done):.0f} s"


class RunClock:
    """Seconds spent in each part of a run, added up by name (``prepare_s`` is what comes first)."""

    def __init__(self, started: float):
        self.last = started
        self.laps: dict[str, float] = {}
        self.lap("prepare_s")

    def lap(self, name: str) -> float:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self.last, 3)
        self.last = now
        return self.laps[name]
