"""KL-divergence drift detection over hashed content words, with a second signal, in river's protocol.

The detector first collects ``baseline_size`` events as its baseline, calibrates, then watches two
signals; either raises the alert, and the alert says which:

**KL** of a sliding window of the last ``window`` events against the baseline::

    D = KL(p_window || q) = sum_k p_w[k] * log(p_w[k] / q[k]),   q = (1 − s)·p̂_baseline + s/K

over K hashed content-word buckets (:class:`learner.drift.features.HashedWords`: function words are left
out, so the words that carry a topic are what moves D); buckets the reference has never seen are
pooled into one "unseen" category (:mod:`learner.drift.divergence` says why). Once monitoring, an
event counts at most ``ceil(mean + 3·std)`` of the baseline's words (a 10 MB memory weighs what a
long ordinary one weighs).

**Surprise**: each event's mean ``−log q`` over its words, fed to a river detector (ADWIN by
default: ``surprise``): a new subject makes every event surprising at once, well before a window
of them has filled. A single odd event (an empty text, a script never seen, a huge text) cannot
raise it: surprises are capped at the baseline's mean + 5 standard deviations.

Calibration (:mod:`learner.drift.calibration`) and the divergence and surprise themselves
(:mod:`learner.drift.divergence`) are pure functions in modules of their own.

After an alert the detector is quiet — a second alert for the same shift is not raised — until
:meth:`rebase` (the learner calls it once a consolidation on the new data was **accepted**),
which starts a new baseline from the current window.

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
...         fired.append((i, det.last_report.detector))
>>> fired
[(309, 'kl')]
>>> [(f["feature"], f["direction"]) for f in det.last_report.top_features[:2]]
[('hut', 'rose'), ('pass', 'rose')]
"""

from __future__ import annotations

import inspect
from array import array
from collections import deque
from typing import Any

import numpy as np
from river import base

from learner.drift.config import DriftConfig
from learner.drift.calibration import chi2_threshold, null_quantile
from learner.drift.divergence import Reference, kl_divergence, reference, smoothed, surprise
from learner.drift.features import HashedWords
from learner.drift.report import DriftReport, top_features
from learner.drift.scalar import ScalarDriftMonitor

__all__ = ["KLDriftDetector"]

WARMING, MONITORING, DRIFTED = "warming", "monitoring", "drifted"
#: What a snapshot keeps of the detector's fitted values, as they are.
_SAVED = ("events_seen", "threshold_", "chi2_threshold_", "bootstrap_threshold_", "null_mean_", "surprise_cap_",
          "event_words_cap_", "divergence_")


class KLDriftDetector(base.DriftDetector):
    """KL divergence of a window of texts against a calibrated baseline, and a river detector on each
    event's surprise (see the module docstring).

    Parameters
    ----------
    window, baseline_size, n_buckets, smoothing, alpha, n_bootstrap, margin, threshold, check_every, surprise, seed
        The ``[drift]`` settings of the same names: :class:`~learner.drift.config.DriftConfig` documents
        each, gives its default and checks it.
    top_k
        Features reported as rising and as falling.
    """

    def __init__(
        self,
        window: int = DriftConfig.window,
        baseline_size: int = DriftConfig.baseline_size,
        n_buckets: int = DriftConfig.n_buckets,
        smoothing: float = DriftConfig.smoothing,
        alpha: float = DriftConfig.alpha,
        n_bootstrap: int = DriftConfig.n_bootstrap,
        margin: float = DriftConfig.margin,
        threshold: float | None = DriftConfig.threshold,
        check_every: int = DriftConfig.check_every,
        surprise: str = DriftConfig.surprise,
        top_k: int = 5,
        seed: int = DriftConfig.seed,
    ):
        super().__init__()
        # the defaults and the checks are the [drift] section's: one source for both
        DriftConfig(window=window, baseline_size=baseline_size, n_buckets=n_buckets, smoothing=smoothing, alpha=alpha,
                    n_bootstrap=n_bootstrap, margin=margin, threshold=threshold, check_every=check_every,
                    surprise=surprise, seed=seed)
        if not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0, got {top_k!r}")
        self.window = window
        self.baseline_size = baseline_size
        self.n_buckets = n_buckets
        self.smoothing = smoothing
        self.alpha = alpha
        self.n_bootstrap = n_bootstrap
        self.margin = margin
        self.threshold = threshold
        self.check_every = check_every
        self.surprise = surprise
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
        self.null_mean_: float | None = None
        self.divergence_ = 0.0
        self.surprise_cap_: float | None = None
        self.event_words_cap_: int | None = None
        self.last_report: DriftReport | None = None
        self._baseline_counts = np.zeros(self.n_buckets)
        self._baseline_events: list[dict[int, int]] = []
        self._window_events: deque[dict[int, int]] = deque()
        # the window's counts: array.array adds one element as fast as a list, and numpy reads it without a copy
        self._window_list = array("d", bytes(8 * self.n_buckets))
        self._ref: Reference | None = None  # the baseline, ready for the divergence and surprise
        self._monitor = ScalarDriftMonitor(self.surprise, "surprise", seed=self.seed) if self.surprise else None

    # -- the river protocol ---------------------------------------------------------
    def update(self, x: str) -> None:
        """Feed one event's text."""
        self._drift_detected = False
        self.events_seen += 1
        counts = self._capped(self.features(x))
        self._slide_window(counts)
        if self.state == WARMING:
            self._baseline_events.append(counts)
            for bucket, c in counts.items():
                self._baseline_counts[bucket] += c
            if len(self._baseline_events) >= self.baseline_size:
                self._calibrate()
            return
        if self.state != MONITORING:
            return
        if self._monitor is not None and counts:
            self._monitor.update(min(self._surprise(counts), self.surprise_cap_))
            if self._monitor.drift_detected:
                self.divergence_ = kl_divergence(self._window_counts, self._ref)
                self._fire(f"{self.surprise}-surprise")
                return
        if self.events_seen % self.check_every == 0 and len(self._window_events) == self.window:
            self.divergence_ = kl_divergence(self._window_counts, self._ref)
            if self.divergence_ > self.threshold_:
                self._fire("kl")

    # -- learner hooks -----------------------------------------------------------------
    def rebase(self) -> None:
        """Start a new baseline from the current window (after an accepted run on the new data)."""
        self._drift_detected = False
        self.state = WARMING
        self.threshold_ = self.threshold
        self.event_words_cap_ = None
        self._baseline_events = list(self._window_events)
        self._baseline_counts = self._window_counts.copy()
        if self._monitor is not None:
            self._monitor.reset()
        if len(self._baseline_events) >= self.baseline_size:
            self._calibrate()

    @property
    def is_monitoring(self) -> bool:
        return self.state == MONITORING

    # -- internals ---------------------------------------------------------------------
    def _slide_window(self, counts: dict[int, int]) -> None:
        self._window_events.append(counts)
        totals = self._window_list
        for bucket, c in counts.items():
            totals[bucket] += c
        if len(self._window_events) > self.window:
            for bucket, c in self._window_events.popleft().items():
                totals[bucket] -= c

    @property
    def _window_counts(self) -> np.ndarray:
        """The window's counts as an array (a read-only view: copy before keeping it)."""
        return np.frombuffer(self._window_list, dtype=np.float64)

    def _capped(self, counts: dict[int, int]) -> dict[int, int]:
        """An event's counts scaled down to ``event_words_cap_`` words (each bucket keeps at least one)."""
        cap = self.event_words_cap_
        n = sum(counts.values())
        if cap is None or n <= cap:
            return counts
        return {b: max(1, round(c * cap / n)) for b, c in counts.items()}

    def _surprise(self, counts: dict[int, int]) -> float:
        return surprise(counts, self._ref)

    def _calibrate(self) -> None:
        self.state = MONITORING
        events = self._baseline_events
        matrix = np.zeros((len(events), self.n_buckets), dtype=np.float32)
        for row, counts in enumerate(events):
            for bucket, c in counts.items():
                matrix[row, bucket] = c
        self.chi2_threshold_ = chi2_threshold(matrix.sum(axis=0, dtype=np.float64), len(events), self.window,
                                              self.alpha)
        self.bootstrap_threshold_, self.null_mean_ = null_quantile(
            matrix, self.window, self.n_bootstrap, self.alpha, self.smoothing, [self.seed, self.events_seen],
            self.margin)
        self.threshold_ = self.threshold if self.threshold is not None else self.bootstrap_threshold_
        self._ref = reference(self._baseline_counts, self.smoothing)
        surprises = [self._surprise(c) for c in events if c]
        mean, std = (float(np.mean(surprises)), float(np.std(surprises))) if surprises else (0.0, 0.0)
        self.surprise_cap_ = mean + 5 * std if surprises else -min(self._ref.log_q_list)
        words = [sum(c.values()) for c in events]
        self.event_words_cap_ = max(1, int(np.ceil(np.mean(words) + 3 * np.std(words)))) if words else None
        self._baseline_events = []  # only the counts are needed from now on

    def _fire(self, detector: str) -> None:
        self._drift_detected = True
        self.state = DRIFTED
        self.last_report = DriftReport(
            detector=detector,
            divergence=self.divergence_,
            threshold=float(self.threshold_),
            window=len(self._window_events),
            baseline_size=int(self.baseline_size),
            events_seen=self.events_seen,
            top_features=self._top_features(),
        )

    def _top_features(self) -> list[dict[str, Any]]:
        window = self._window_counts
        p = window / max(window.sum(), 1e-12)
        return top_features(p, smoothed(self._baseline_counts, self.smoothing), self.features.name, self.top_k)

    # -- persistence -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`restore` continues exactly from here."""

        return {
            "kind": "kl-drift",
            "format": 2,
            "params": self._get_params(),
            "state": self.state,
            **{name: getattr(self, name) for name in _SAVED},
            "baseline_counts": self._baseline_counts.tolist(),
            "baseline_events": [[list(c.keys()), list(c.values())] for c in self._baseline_events],
            "window_events": [[list(c.keys()), list(c.values())] for c in self._window_events],
            "names": {str(k): v for k, v in self.features.names.items()},
            "monitor": self._monitor.snapshot() if self._monitor is not None else None,
            "last_report": self.last_report.to_dict() if self.last_report else None,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> "KLDriftDetector":
        if data.get("kind") != "kl-drift":
            raise ValueError(f"not a KL drift snapshot (kind={data.get('kind')!r})")
        if data.get("format") != 2:  # an older detector's state: start a fresh baseline rather than misread it
            params = {k: v for k, v in data["params"].items() if k in inspect.signature(cls.__init__).parameters}
            return cls(**params)

        def sparse(rows):
            return [dict(zip((int(b) for b in buckets), (int(c) for c in counts))) for buckets, counts in rows]

        det = cls(**data["params"])
        det.state = data["state"]
        for name in _SAVED:
            setattr(det, name, data.get(name))
        det._baseline_counts = np.asarray(data["baseline_counts"], dtype=np.float64)
        det._baseline_events = sparse(data["baseline_events"])
        for counts in sparse(data["window_events"]):
            det._slide_window(counts)
        det.features.names = {int(k): v for k, v in data["names"].items()}
        if det.state != WARMING:
            det._ref = reference(det._baseline_counts, det.smoothing)
        if data.get("monitor") and det._monitor is not None:
            det._monitor = ScalarDriftMonitor.restore(data["monitor"])
        det.last_report = DriftReport(**data["last_report"]) if data["last_report"] else None
        return det
