"""KL-divergence drift detection over hashed word features, in river's protocol.

The detector first collects ``baseline_size`` events as its baseline, calibrates a
threshold from them, then compares a sliding window of the last ``window`` events with
the baseline::

    D = KL(p_window || p_baseline) = sum_k p_w[k] * log(p_w[k] / p_b[k])

where ``p_w`` is the window's empirical distribution over the K buckets and ``p_b`` the
baseline's mixed with the uniform distribution, ``(1 − s)·p̂_b + s/K``, so that no bucket
has zero probability whatever the baseline's size (additive pseudo-counts would take a
share of the mass that depends on how many words the baseline holds).
Only the reference is smoothed: smoothing the window too would make D depend on the
window's size (the smoothing mass differs), not only on its content.

Threshold calibration (when ``threshold`` is None) takes the larger of:

- the chi-square bound: under no drift, 2·n·KL(p̂‖p₀) ≈ χ²(K−1), so
  ``χ²_{K−1, 1−alpha} / (2n)`` with n the number of words in the window, and K the
  buckets the baseline actually uses (with n ≪ 1024 most buckets are empty and the
  full K would make the bound meaninglessly high);
- a split bootstrap: half the baseline builds a reference distribution, windows drawn
  from the other half measure how far an undrifted window strays from it; the
  ``1 − 1/n_bootstrap`` quantile times ``margin``. Words within one event are not
  independent draws, which makes the χ² bound too low on real text; the bootstrap
  resamples whole events and so sees that dependence.

After a drift report the detector stays quiet until :meth:`rebase` (the learner calls
it once it has consolidated on the new distribution), which starts a new baseline from
the current window.

Examples
--------
>>> import random
>>> rng = random.Random(0)
>>> cooking = ["stir the onion and garlic in butter", "bake the bread for an hour",
...            "season the soup with salt and pepper"]
>>> hiking = ["the trail climbs to the ridge", "pack water and a map for the summit",
...           "the hut sits below the pass"]
>>> det = KLDriftDetector(window=50, baseline_size=200, check_every=5, seed=1)
>>> fired = []
>>> for i in range(600):
...     det.update(rng.choice(cooking if i < 300 else hiking))
...     if det.drift_detected:
...         fired.append(i)
>>> fired
[304]
>>> [(f["feature"], f["direction"]) for f in det.last_report.top_features[:2]]
[('pass', 'rose'), ('summit', 'rose')]
>>> round(det.threshold_, 4), round(det.chi2_threshold_, 4)
(0.141, 0.0585)
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from river import base
from scipy.stats import chi2

from learner.features import HashedWords

__all__ = ["DriftReport", "KLDriftDetector", "ScalarDriftMonitor", "RIVER_DETECTORS", "make_river_detector"]

WARMING, MONITORING, DRIFTED = "warming", "monitoring", "drifted"


@dataclass
class DriftReport:
    """What the detector saw when it fired."""

    detector: str
    divergence: float
    threshold: float
    window: int
    baseline_size: int
    events_seen: int
    top_features: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class KLDriftDetector(base.DriftDetector):
    """Smoothed KL divergence of a sliding window of texts against a calibrated baseline.

    Parameters
    ----------
    window
        Events in the sliding window.
    baseline_size
        Events collected before monitoring starts (and after each rebase).
    n_buckets
        Hashed word buckets (K).
    smoothing
        Share of the baseline's probability mass spread uniformly over the buckets.
    alpha
        False-alarm level of the chi-square bound.
    n_bootstrap
        Bootstrap windows for the calibrated threshold (0 = chi-square bound only).
    margin
        Factor on the bootstrap quantile.
    threshold
        A fixed threshold instead of calibration.
    check_every
        Compute the divergence every this many events (the window slides every event).
    top_k
        Features reported as rising and as falling.
    seed
        Seed for the bootstrap.
    """

    def __init__(
        self,
        window: int = 200,
        baseline_size: int = 1000,
        n_buckets: int = 1024,
        smoothing: float = 0.01,
        alpha: float = 0.001,
        n_bootstrap: int = 200,
        margin: float = 1.5,
        threshold: float | None = None,
        check_every: int = 10,
        top_k: int = 5,
        seed: int = 0,
    ):
        super().__init__()
        for name, value, low in (("window", window, 2), ("baseline_size", baseline_size, 4),
                                 ("check_every", check_every, 1), ("top_k", top_k, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if baseline_size < window:
            raise ValueError(f"baseline_size ({baseline_size}) must be at least window ({window})")
        if not 0 < smoothing < 1:
            raise ValueError(f"smoothing must be in (0, 1), got {smoothing!r}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        if threshold is not None and threshold <= 0:
            raise ValueError(f"threshold must be positive, got {threshold!r}")
        self.window = window
        self.baseline_size = baseline_size
        self.n_buckets = n_buckets
        self.smoothing = smoothing
        self.alpha = alpha
        self.n_bootstrap = n_bootstrap
        self.margin = margin
        self.threshold = threshold
        self.check_every = check_every
        self.top_k = top_k
        self.seed = seed
        self.features = HashedWords(n_buckets)
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self.state = WARMING
        self.events_seen = 0
        self.threshold_ = self.threshold
        self.chi2_threshold_: float | None = None
        self.bootstrap_threshold_: float | None = None
        self.divergence_ = 0.0
        self.last_report: DriftReport | None = None
        self._baseline_counts = np.zeros(self.n_buckets)
        self._baseline_events: list[tuple[np.ndarray, np.ndarray]] = []
        self._window_events: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._window_counts = np.zeros(self.n_buckets)

    # -- the river protocol ---------------------------------------------------------
    def update(self, x: str) -> None:
        """Feed one event's text."""
        self._drift_detected = False
        self.events_seen += 1
        sparse = self.features(x)
        self._slide_window(sparse)
        if self.state == WARMING:
            self._baseline_events.append(sparse)
            np.add.at(self._baseline_counts, sparse[0], sparse[1])
            if len(self._baseline_events) >= self.baseline_size:
                self._calibrate()
        elif self.state == MONITORING and self.events_seen % self.check_every == 0:
            if len(self._window_events) == self.window:
                self.divergence_ = self._kl(self._window_counts, self._baseline_counts)
                if self.divergence_ > self.threshold_:
                    self._fire()

    # -- learner hooks -----------------------------------------------------------------
    def rebase(self) -> None:
        """Start a new baseline from the current window (after consolidating on new data)."""
        self._drift_detected = False
        self.state = WARMING
        self.threshold_ = self.threshold
        self._baseline_events = list(self._window_events)
        self._baseline_counts = self._window_counts.copy()
        if len(self._baseline_events) >= self.baseline_size:
            self._calibrate()

    @property
    def is_monitoring(self) -> bool:
        return self.state == MONITORING

    # -- internals ---------------------------------------------------------------------
    def _slide_window(self, sparse: tuple[np.ndarray, np.ndarray]) -> None:
        self._window_events.append(sparse)
        np.add.at(self._window_counts, sparse[0], sparse[1])
        if len(self._window_events) > self.window:
            old_idx, old_counts = self._window_events.popleft()
            np.subtract.at(self._window_counts, old_idx, old_counts)

    def _distribution(self, counts: np.ndarray) -> np.ndarray:
        total = counts.sum()
        empirical = counts / total if total > 0 else np.full(self.n_buckets, 1.0 / self.n_buckets)
        return (1 - self.smoothing) * empirical + self.smoothing / self.n_buckets

    def _kl(self, window_counts: np.ndarray, baseline_counts: np.ndarray) -> float:
        total = window_counts.sum()
        if total <= 0:
            return 0.0
        p = window_counts / total
        q = self._distribution(baseline_counts)
        used = p > 0
        return float(np.sum(p[used] * np.log(p[used] / q[used])))

    def _dense(self, events: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        matrix = np.zeros((len(events), self.n_buckets))
        for row, (idx, counts) in enumerate(events):
            matrix[row, idx] = counts
        return matrix

    def _calibrate(self) -> None:
        self.state = MONITORING
        self.chi2_threshold_ = self._chi2_threshold()
        self.bootstrap_threshold_ = self._bootstrap_threshold()
        if self.threshold is not None:
            self.threshold_ = self.threshold
        else:
            self.threshold_ = max(self.chi2_threshold_, self.bootstrap_threshold_)
        self._baseline_events = []  # only the counts are needed from now on

    def _chi2_threshold(self) -> float:
        words_per_event = self._baseline_counts.sum() / max(len(self._baseline_events), 1)
        n = max(words_per_event * self.window, 1.0)
        support = max(int(np.count_nonzero(self._baseline_counts)), 2)
        return float(chi2.ppf(1 - self.alpha, support - 1) / (2 * n))

    def _bootstrap_threshold(self) -> float:
        if self.n_bootstrap <= 0:
            return 0.0
        rng = np.random.default_rng([self.seed, self.events_seen])
        matrix = self._dense(self._baseline_events)
        order = rng.permutation(len(matrix))
        half = len(matrix) // 2
        reference, held_out = matrix[order[:half]].sum(axis=0), matrix[order[half:]]
        divergences = np.empty(self.n_bootstrap)
        for b in range(self.n_bootstrap):
            rows = rng.integers(0, len(held_out), size=self.window)
            divergences[b] = self._kl(held_out[rows].sum(axis=0), reference)
        quantile = float(np.quantile(divergences, 1 - 1 / self.n_bootstrap))
        return quantile * self.margin

    def _fire(self) -> None:
        self._drift_detected = True
        self.state = DRIFTED
        self.last_report = DriftReport(
            detector="kl",
            divergence=self.divergence_,
            threshold=float(self.threshold_),
            window=self.window,
            baseline_size=int(self.baseline_size),
            events_seen=self.events_seen,
            top_features=self._top_features(),
        )

    def _top_features(self) -> list[dict[str, Any]]:
        p = self._window_counts / max(self._window_counts.sum(), 1e-12)
        q = self._distribution(self._baseline_counts)
        contribution = np.where(p > 0, p * np.log(np.maximum(p, 1e-300) / q), 0.0)
        rose = np.argsort(-contribution)[: self.top_k]
        fell = np.argsort(p - q)[: self.top_k]
        out = []
        for direction, buckets in (("rose", rose), ("fell", fell)):
            for b in buckets:
                out.append({
                    "feature": self.features.name(b),
                    "direction": direction,
                    "baseline_p": round(float(q[b]), 6),
                    "window_p": round(float(p[b]), 6),
                })
        return out

    # -- persistence -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`restore` continues exactly from here."""

        def sparse_list(events):
            return [[idx.tolist(), counts.tolist()] for idx, counts in events]

        return {
            "kind": "kl-drift",
            "params": self._get_params(),
            "state": self.state,
            "events_seen": self.events_seen,
            "threshold_": self.threshold_,
            "chi2_threshold_": self.chi2_threshold_,
            "bootstrap_threshold_": self.bootstrap_threshold_,
            "divergence_": self.divergence_,
            "baseline_counts": self._baseline_counts.tolist(),
            "baseline_events": sparse_list(self._baseline_events),
            "window_events": sparse_list(self._window_events),
            "names": {str(k): v for k, v in self.features.names.items()},
            "last_report": self.last_report.to_dict() if self.last_report else None,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> "KLDriftDetector":
        if data.get("kind") != "kl-drift":
            raise ValueError(f"not a KL drift snapshot (kind={data.get('kind')!r})")

        def sparse_tuples(rows):
            return [(np.asarray(i, dtype=np.int64), np.asarray(c, dtype=np.float64)) for i, c in rows]

        det = cls(**data["params"])
        det.state = data["state"]
        det.events_seen = int(data["events_seen"])
        det.threshold_ = data["threshold_"]
        det.chi2_threshold_ = data.get("chi2_threshold_")
        det.bootstrap_threshold_ = data.get("bootstrap_threshold_")
        det.divergence_ = float(data["divergence_"])
        det._baseline_counts = np.asarray(data["baseline_counts"], dtype=np.float64)
        det._baseline_events = sparse_tuples(data["baseline_events"])
        for sparse in sparse_tuples(data["window_events"]):
            det._slide_window(sparse)
        det.features.names = {int(k): v for k, v in data["names"].items()}
        det.last_report = DriftReport(**data["last_report"]) if data["last_report"] else None
        return det


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
