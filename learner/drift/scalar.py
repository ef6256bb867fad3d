"""River's detectors by name, and a monitor that runs one on a scalar signal (per-event loss or
surprise) with a report like the KL detector's."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from river import base

from learner.drift.report import DriftReport

__all__ = ["RIVER_DETECTORS", "ScalarDriftMonitor", "make_river_detector"]

RIVER_DETECTORS = ("adwin", "page-hinkley", "kswin")


def make_river_detector(name: str, seed: int = 0) -> base.DriftDetector:
    """One of river's detectors by name (for scalar signals such as per-event loss)."""
    from river import drift

    if name == "adwin":
        return drift.ADWIN()
    if name == "page-hinkley":
        return drift.PageHinkley()
    if name == "kswin":
        return drift.KSWIN(seed=seed)
    raise ValueError(f"unknown river detector {name!r} (choose from {', '.join(RIVER_DETECTORS)})")


class ScalarDriftMonitor(base.DriftDetector):
    """A river detector on a scalar signal (per-event loss), with a report like the KL detector's.

    It keeps the last ``history`` values: they give the report its means, and a restored
    monitor is rebuilt by replaying them (river's detectors have no JSON state, and
    nothing from disk is unpickled).

    >>> import random
    >>> rng = random.Random(0)
    >>> monitor = ScalarDriftMonitor("adwin", signal="loss")
    >>> fired = []
    >>> for i in range(2000):
    ...     monitor.update(rng.gauss(1.0 if i < 1000 else 2.0, 0.1))
    ...     if monitor.drift_detected:
    ...         fired.append(i)
    >>> fired[0] - 1000 < 100, monitor.last_report.detector
    (True, 'adwin-loss')
    """

    def __init__(self, detector: str = "adwin", signal: str = "loss", history: int = 1000, seed: int = 0):
        super().__init__()
        if history < 2:
            raise ValueError(f"history must be at least 2, got {history!r}")
        self.detector = detector
        self.signal = signal
        self.history = history
        self.seed = seed
        make_river_detector(detector, seed)  # fail early on a bad name
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._river = make_river_detector(self.detector, self.seed)
        self._values: deque[float] = deque(maxlen=self.history)
        self.events_seen = 0
        self.last_report: DriftReport | None = None

    def reset(self) -> None:
        """Forget the signal (the learner calls this when a new version changes what loss means)."""
        self._reset()

    def update(self, x: float) -> None:
        self._drift_detected = False
        self.events_seen += 1
        self._values.append(float(x))
        self._river.update(float(x))
        if self._river.drift_detected:
            self._drift_detected = True
            self._fire()

    def _fire(self) -> None:
        values = np.asarray(self._values)
        recent = values[-min(len(values), 50):]
        before = values[: max(len(values) - len(recent), 1)]
        self.last_report = DriftReport(
            detector=f"{self.detector}-{self.signal}",
            divergence=float(recent.mean() - before.mean()),
            threshold=float(getattr(self._river, "delta", getattr(self._river, "alpha", 0.0))),
            window=len(recent),
            baseline_size=len(before),
            events_seen=self.events_seen,
            top_features=[{"feature": f"mean {self.signal}", "direction": "rose" if recent.mean() > before.mean()
                           else "fell", "baseline_p": round(float(before.mean()), 6),
                           "window_p": round(float(recent.mean()), 6)}],
        )

    def snapshot(self) -> dict[str, Any]:
        return {"kind": "scalar-drift", "params": self._get_params(), "values": list(self._values),
                "events_seen": self.events_seen}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> "ScalarDriftMonitor":
        if data.get("kind") != "scalar-drift":
            raise ValueError(f"not a scalar drift snapshot (kind={data.get('kind')!r})")
        monitor = cls(**data["params"])
        for value in data["values"]:
            monitor._values.append(float(value))
            monitor._river.update(float(value))
        monitor._drift_detected = False
        monitor.events_seen = int(data["events_seen"])
        return monitor
