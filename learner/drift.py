"""KL-divergence drift detection over hashed content words, with a second signal, in river's protocol.

The detector first collects ``baseline_size`` events as its baseline, calibrates, then watches two
signals; either raises the alert, and the alert says which:

**KL** of a sliding window of the last ``window`` events against the baseline::

    D = KL(p_window || q) = sum_k p_w[k] * log(p_w[k] / q[k]),   q = (1 − s)·p̂_baseline + s/K

over K hashed content-word buckets (:class:`learner.features.HashedWords`: function words are left
out, so the words that carry a topic are what moves D). Only the reference is smoothed: smoothing
the window too would make D depend on the window's size. Buckets the reference has never seen are
pooled into one "unseen" category (its q is the smoothing mass they share): the plug-in KL of many
rare novel words is mostly noise, and a single odd event (a text in a script never seen) would
otherwise add a term per word; a real shift still moves the pooled mass by a lot. Once monitoring,
an event counts at most ``ceil(mean + 3·std)`` of the baseline's words per event (a 10 MB memory
weighs what a long ordinary one weighs).

**Surprise**: each event's mean ``−log q`` over its words, fed to a river detector (ADWIN by
default: ``surprise``): a new subject makes every event surprising at once, well before a window
of them has filled. A single odd event (an empty text, a script never seen, a huge text) cannot
raise it: surprises are capped at the baseline's mean + 5 standard deviations.

Calibration. On a varied baseline, most of D under no drift comes from words a window has and the
reference lacks, and from the finite window's own noise (the plug-in KL's bias grows with the
number of distinct words). A bootstrap that compares half the baseline with windows drawn *with
replacement* from the other half overstates that (repeated events, half-size reference) — that is
what made the threshold 0.728 where a real shift gave 0.37. memstream calibrates on the statistic
it will compute: ``n_bootstrap`` windows of ``window`` whole events drawn *without replacement*
from the baseline, each against the reference built from the rest of it (disjoint, as in
monitoring; whole events keep the words of one event together). A Gamma distribution fitted to
those divergences (by moments: 2n·KL is about χ² under independence, a Gamma in general) gives
the ``1 − alpha`` quantile; times ``margin`` it is the threshold. The χ² bound χ²(K'−1, 1−alpha)/(2n)
is reported beside it for reference.

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

import math
from array import array
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
from river import base
from scipy.special import xlogy

from learner.features import HashedWords

__all__ = ["DriftReport", "KLDriftDetector", "ScalarDriftMonitor", "RIVER_DETECTORS", "make_river_detector"]

WARMING, MONITORING, DRIFTED = "warming", "monitoring", "drifted"


class _Reference(NamedTuple):
    log_q: np.ndarray  # log of the smoothed reference distribution (0 where the reference has no counts)
    seen: np.ndarray  # 1.0 for the buckets the reference has counts in, else 0.0
    log_q_unseen: float  # log of the mass the other buckets share (the pooled "unseen" category)
    log_q_list: list[float]  # log_q for per-word lookups (a list indexes faster than an array)


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
    """KL divergence of a window of texts against a calibrated baseline, and a river detector on each
    event's surprise (see the module docstring).

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
        False-alarm level of the calibrated threshold (the Gamma tail) and of the χ² bound.
    n_bootstrap
        Windows drawn from the baseline to calibrate the threshold.
    margin
        Factor on the calibrated quantile.
    threshold
        A fixed KL threshold instead of calibration.
    check_every
        Compute the divergence every this many events (the window slides every event).
    surprise
        The river detector on per-event surprise (``adwin``, ``page-hinkley``, ``kswin``; empty: KL only).
    top_k
        Features reported as rising and as falling.
    seed
        Seed for the calibration draws.
    """

    def __init__(
        self,
        window: int = 100,
        baseline_size: int = 500,
        n_buckets: int = 1024,
        smoothing: float = 0.01,
        alpha: float = 0.001,
        n_bootstrap: int = 200,
        margin: float = 1.0,
        threshold: float | None = None,
        check_every: int = 5,
        surprise: str = "adwin",
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
        if surprise and surprise not in RIVER_DETECTORS:
            raise ValueError(f"surprise must be empty or one of {', '.join(RIVER_DETECTORS)}, got {surprise!r}")
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
        self._ref: _Reference | None = None  # the baseline, ready for the divergence and surprise
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
            _add(self._baseline_counts, counts)
            if len(self._baseline_events) >= self.baseline_size:
                self._calibrate()
            return
        if self.state != MONITORING:
            return
        if self._monitor is not None and counts:
            self._monitor.update(min(self._surprise(counts), self.surprise_cap_))
            if self._monitor.drift_detected:
                self.divergence_ = self._kl(self._window_counts)
                self._fire(f"{self.surprise}-surprise")
                return
        if self.events_seen % self.check_every == 0 and len(self._window_events) == self.window:
            self.divergence_ = self._kl(self._window_counts)
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

    def _distribution(self, counts: np.ndarray) -> np.ndarray:
        total = counts.sum()
        empirical = counts / total if total > 0 else np.full(self.n_buckets, 1.0 / self.n_buckets)
        return (1 - self.smoothing) * empirical + self.smoothing / self.n_buckets

    def _reference(self, counts: np.ndarray) -> _Reference:
        q = self._distribution(counts)
        seen = counts > 0
        q_unseen = float(q[~seen].sum())
        log_q = np.log(q)
        return _Reference(np.where(seen, log_q, 0.0), seen.astype(np.float64),
                          math.log(q_unseen) if q_unseen > 0 else -math.inf, log_q.tolist())

    def _kl(self, window_counts: np.ndarray, reference_counts: np.ndarray | None = None) -> float:
        """KL(window || smoothed reference), the buckets the reference lacks pooled into one; the
        reference is the baseline unless given. With w the window's counts (T in all), over the
        buckets the reference has: Σ p·log(p/q) = (Σ w·log w − Σ w·log q)/T − log T · W/T."""
        total = float(window_counts.sum())
        if total <= 0:
            return 0.0
        ref = self._ref if reference_counts is None else self._reference(reference_counts)
        w = window_counts * ref.seen
        in_seen = float(w.sum())
        divergence = 0.0
        if in_seen > 0:
            divergence = (float(xlogy(w, w).sum()) - float(w @ ref.log_q)) / total - math.log(total) * in_seen / total
        p_unseen = (total - in_seen) / total
        if p_unseen > 1e-12:
            divergence += p_unseen * (math.log(p_unseen) - ref.log_q_unseen)
        return max(divergence, 0.0)

    def _surprise(self, counts: dict[int, int]) -> float:
        """Mean −log q over an event's words (nats per word)."""
        log_q = self._ref.log_q_list
        total = n = 0.0
        for bucket, c in counts.items():
            total -= log_q[bucket] * c
            n += c
        return total / n

    def _calibrate(self) -> None:
        self.state = MONITORING
        events = self._baseline_events
        matrix = np.zeros((len(events), self.n_buckets), dtype=np.float32)
        for row, counts in enumerate(events):
            for bucket, c in counts.items():
                matrix[row, bucket] = c
        total = matrix.sum(axis=0, dtype=np.float64)
        self.chi2_threshold_ = self._chi2_threshold(total, len(events))
        self.bootstrap_threshold_ = self._null_quantile(matrix, total)
        self.threshold_ = self.threshold if self.threshold is not None else self.bootstrap_threshold_
        self._ref = self._reference(self._baseline_counts)
        surprises = [self._surprise(c) for c in events if c]
        mean, std = (float(np.mean(surprises)), float(np.std(surprises))) if surprises else (0.0, 0.0)
        self.surprise_cap_ = mean + 5 * std if surprises else -min(self._ref.log_q_list)
        words = [sum(c.values()) for c in events]
        self.event_words_cap_ = max(1, int(np.ceil(np.mean(words) + 3 * np.std(words)))) if words else None
        self._baseline_events = []  # only the counts are needed from now on

    def _chi2_threshold(self, total: np.ndarray, n_events: int) -> float:
        from scipy.stats import chi2

        n = max(total.sum() / max(n_events, 1) * self.window, 1.0)
        support = max(int(np.count_nonzero(total)), 2)
        return float(chi2.ppf(1 - self.alpha, support - 1) / (2 * n))

    def _null_quantile(self, matrix: np.ndarray, total: np.ndarray) -> float:
        """The calibrated threshold: windows drawn without replacement from the baseline, each against the
        rest of it; a Gamma fitted to their divergences by moments; its ``1 − alpha`` quantile × margin."""
        from scipy.stats import gamma

        n_events = len(matrix)
        size = min(self.window, n_events // 2)
        rng = np.random.default_rng([self.seed, self.events_seen])
        draws = np.empty(max(self.n_bootstrap, 2))
        for b in range(len(draws)):
            rows = rng.choice(n_events, size=size, replace=False)
            window = matrix[rows].sum(axis=0, dtype=np.float64)
            draws[b] = self._kl(window, total - window)
        mean, var = float(draws.mean()), float(draws.var())
        self.null_mean_ = mean
        if var <= 0 or mean <= 0:
            return max(mean, 1e-9) * self.margin
        return float(gamma.ppf(1 - self.alpha, mean * mean / var, scale=var / mean)) * self.margin

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
        q = self._distribution(self._baseline_counts)
        contribution = np.where(p > 0, p * np.log(np.maximum(p, 1e-300) / q), 0.0)
        # equal contributions (words that always come together) are ordered by name: a total order,
        # the same on every CPU and numpy build (argsort's default sort is not stable)
        name = self.features.name
        rose = sorted(np.flatnonzero(p > q), key=lambda b: (-contribution[b], name(b)))[: self.top_k]
        fell = sorted(np.flatnonzero(p < q), key=lambda b: (p[b] - q[b], name(b)))[: self.top_k]
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
            return [[list(c.keys()), list(c.values())] for c in events]

        return {
            "kind": "kl-drift",
            "format": 2,
            "params": self._get_params(),
            "state": self.state,
            "events_seen": self.events_seen,
            "threshold_": self.threshold_,
            "chi2_threshold_": self.chi2_threshold_,
            "bootstrap_threshold_": self.bootstrap_threshold_,
            "null_mean_": self.null_mean_,
            "surprise_cap_": self.surprise_cap_,
            "event_words_cap_": self.event_words_cap_,
            "divergence_": self.divergence_,
            "baseline_counts": self._baseline_counts.tolist(),
            "baseline_events": sparse_list(self._baseline_events),
            "window_events": sparse_list(self._window_events),
            "names": {str(k): v for k, v in self.features.names.items()},
            "monitor": self._monitor.snapshot() if self._monitor is not None else None,
            "last_report": self.last_report.to_dict() if self.last_report else None,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> "KLDriftDetector":
        if data.get("kind") != "kl-drift":
            raise ValueError(f"not a KL drift snapshot (kind={data.get('kind')!r})")
        if data.get("format") != 2:  # an older detector's state: start a fresh baseline rather than misread it
            params = {k: v for k, v in data["params"].items() if k in cls._param_names()}
            return cls(**params)

        def sparse(rows):
            return [dict(zip((int(b) for b in buckets), (int(c) for c in counts))) for buckets, counts in rows]

        det = cls(**data["params"])
        det.state = data["state"]
        det.events_seen = int(data["events_seen"])
        det.threshold_ = data["threshold_"]
        det.chi2_threshold_ = data.get("chi2_threshold_")
        det.bootstrap_threshold_ = data.get("bootstrap_threshold_")
        det.null_mean_ = data.get("null_mean_")
        det.surprise_cap_ = data.get("surprise_cap_")
        det.event_words_cap_ = data.get("event_words_cap_")
        det.divergence_ = float(data["divergence_"])
        det._baseline_counts = np.asarray(data["baseline_counts"], dtype=np.float64)
        det._baseline_events = sparse(data["baseline_events"])
        for counts in sparse(data["window_events"]):
            det._slide_window(counts)
        det.features.names = {int(k): v for k, v in data["names"].items()}
        if det.state != WARMING:
            det._ref = det._reference(det._baseline_counts)
        if data.get("monitor") and det._monitor is not None:
            det._monitor = ScalarDriftMonitor.restore(data["monitor"])
        det.last_report = DriftReport(**data["last_report"]) if data["last_report"] else None
        return det

    @classmethod
    def _param_names(cls) -> set[str]:
        import inspect

        return set(inspect.signature(cls.__init__).parameters) - {"self"}


def _add(vector: np.ndarray, counts: dict[int, int], sign: float = 1.0) -> None:
    for bucket, c in counts.items():
        vector[bucket] += sign * c


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
