"""What a drift detector saw when it fired.

>>> r = DriftReport(detector="kl", divergence=0.52, threshold=0.31, window=100, baseline_size=500, events_seen=812)
>>> r.to_dict()["detector"], DriftReport(**r.to_dict()) == r
('kl', True)
>>> top_features(np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.2, 0.6]), "abc".__getitem__, top_k=1)
[{'feature': 'a', 'direction': 'rose', 'baseline_p': 0.2, 'window_p': 0.5}, {'feature': 'c', 'direction': 'fell', 'baseline_p': 0.6, 'window_p': 0.0}]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["DriftReport", "top_features"]


@dataclass
class DriftReport:
    """The detector, the divergence against its threshold, the window and baseline sizes, and the
    features that rose or fell most (each with its baseline and window probability)."""

    detector: str
    divergence: float
    threshold: float
    window: int
    baseline_size: int
    events_seen: int
    top_features: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def top_features(p: np.ndarray, q: np.ndarray, name: Callable[[int], str], top_k: int) -> list[dict[str, Any]]:
    """The ``top_k`` buckets that rose most (by their term of KL(p‖q)) and fell most (by p − q), named
    by ``name``, each with its baseline (q) and window (p) probability."""
    contribution = np.where(p > 0, p * np.log(np.maximum(p, 1e-300) / q), 0.0)
    # equal contributions (words that always come together) are ordered by name: a total order,
    # the same on every CPU and numpy build (argsort's default sort is not stable)
    rose = sorted(np.flatnonzero(p > q), key=lambda b: (-contribution[b], name(b)))[:top_k]
    fell = sorted(np.flatnonzero(p < q), key=lambda b: (p[b] - q[b], name(b)))[:top_k]
    return [{"feature": name(b), "direction": direction, "baseline_p": round(float(q[b]), 6),
             "window_p": round(float(p[b]), 6)}
            for direction, buckets in (("rose", rose), ("fell", fell)) for b in buckets]
