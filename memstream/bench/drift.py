"""``memstream bench drift``: detection delay, missed detections and false alarms of every detector.

Streams (built from a domain-labelled stream, by default the public benchmark stream)
    switch      ``n_before`` events of domain A, then ``n_after`` of domain B, for every ordered
                pair (A, B) and every seed: the switch point is known.
    stationary  ``stationary_len`` events drawn i.i.d. (with replacement) from one domain, and
                from all domains mixed: any detection is a false alarm.

Detectors, all under the same policy: a baseline of ``drift.baseline_size`` events is
collected first; after every detection the baseline is rebuilt from the last
``drift.window`` events plus the next ones (what the learner does after a drift run).
    kl            memstream's :class:`learner.drift.KLDriftDetector` (the production settings).
    adwin, page-hinkley, kswin
                  river's detectors on a scalar signal made from the *same features*: each
                  event's surprise under the baseline's smoothed hashed-word distribution,
                  ``−(1/n_words) Σ log p₀(bucket(word))``.
    always        fires on every event it may (a reference no score may flatter itself against).

Measures: median and mean detection delay (events after the switch until the first
detection), missed detections (no detection in the ``n_after`` events), false alarms per
10,000 events on the stationary streams and the mean number of events between them (None: no
false alarm at all).
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from learner.config import DriftConfig
from learner.drift import KLDriftDetector, make_river_detector
from learner.events import MemoryEvent
from learner.features import HashedWords

__all__ = ["DETECTORS", "StreamCase", "build_cases", "run_drift", "SurpriseSignal"]

DETECTORS = ("kl", "adwin", "page-hinkley", "kswin", "always")


@dataclass
class StreamCase:
    name: str
    kind: str  # "switch" or "stationary"
    texts: list[str]
    switch_at: int | None = None


def build_cases(events: list[MemoryEvent], seeds: list[int], n_before: int = 700, n_after: int = 500,
                stationary_len: int = 20_000) -> list[StreamCase]:
    """Switch streams for every ordered domain pair and seed; one stationary stream per domain and a mix."""
    groups: dict[str, list[str]] = {}
    for event in events:
        if event.domain is not None:
            groups.setdefault(str(event.domain), []).append(event.training_text)
    if len(groups) < 2:
        raise ValueError(f"the drift benchmark needs at least 2 domains in meta.domain, found {len(groups)}")
    cases = []
    for seed in seeds:
        rng = random.Random(seed)
        for a in groups:
            for b in groups:
                if a == b:
                    continue
                before = [rng.choice(groups[a]) for _ in range(n_before)]
                after = [rng.choice(groups[b]) for _ in range(n_after)]
                cases.append(StreamCase(f"{a}->{b} seed {seed}", "switch", before + after, n_before))
    rng = random.Random(seeds[0] if seeds else 0)
    pools = dict(groups)
    pools["mixed"] = [t for texts in groups.values() for t in texts]
    for name, pool in pools.items():
        cases.append(StreamCase(f"{name} stationary", "stationary", [rng.choice(pool) for _ in range(stationary_len)]))
    return cases


class SurpriseSignal:
    """Per-event surprise under a baseline hashed-word distribution; the baseline follows the policy above.

    >>> s = SurpriseSignal(baseline_size=3, window=2)
    >>> [None if v is None else round(v, 3) for v in (s.update(t) for t in ["a b", "a b", "a c", "a b", "z z"])]
    [None, None, None, 0.906, 11.537]
    """

    def __init__(self, baseline_size: int, window: int, n_buckets: int = 1024, smoothing: float = 0.01):
        self.baseline_size = baseline_size
        self.n_buckets = n_buckets
        self.smoothing = smoothing
        self.features = HashedWords(n_buckets)
        self.recent: deque = deque(maxlen=window)
        self.collected: list = []
        self.log_p0: np.ndarray | None = None

    @property
    def monitoring(self) -> bool:
        return self.log_p0 is not None

    def update(self, text: str) -> float | None:
        sparse = self.features(text)
        self.recent.append(sparse)
        if self.log_p0 is None:
            self.collected.append(sparse)
            if len(self.collected) >= self.baseline_size:
                counts = np.zeros(self.n_buckets)
                for idx, c in self.collected:
                    np.add.at(counts, idx, c)
                p0 = (1 - self.smoothing) * counts / max(counts.sum(), 1.0) + self.smoothing / self.n_buckets
                self.log_p0 = np.log(p0)
                self.collected = []
            return None
        idx, counts = sparse
        if counts.sum() == 0:
            return 0.0
        return float(-(self.log_p0[idx] * counts).sum() / counts.sum())

    def rebase(self) -> None:
        self.log_p0 = None
        self.collected = list(self.recent)


class _Runner:
    """One detector under the common policy: ``update(text)`` returns True when it fires."""

    def __init__(self, name: str, drift: DriftConfig, seed: int):
        self.name = name
        self.seed = seed
        self.drift = drift
        if name == "kl":
            self.kl = KLDriftDetector(**{**drift.kl_params(), "seed": seed})
        else:
            self.signal = SurpriseSignal(drift.baseline_size, drift.window, drift.n_buckets, drift.smoothing)
            self.river = make_river_detector(name, seed) if name != "always" else None

    def update(self, text: str) -> bool:
        if self.name == "kl":
            self.kl.update(text)
            if self.kl.drift_detected:
                self.kl.rebase()
                return True
            return False
        value = self.signal.update(text)
        if value is None:
            return False
        fired = True
        if self.river is not None:
            self.river.update(value)
            fired = self.river.drift_detected
        if fired:
            self.signal.rebase()
            self.river = make_river_detector(self.name, self.seed) if self.name != "always" else None
        return fired


def _run_case(case: StreamCase, detector: str, drift: DriftConfig, seed: int) -> list[int]:
    runner = _Runner(detector, drift, seed)
    return [i for i, text in enumerate(case.texts) if runner.update(text)]


def _summarise(cases: list[StreamCase], fires: dict[str, list[int]]) -> dict:
    delays, missed, pre_switch_alarms = [], 0, 0
    stationary_events, stationary_alarms = 0, 0
    per_case: dict[str, int | None] = {}  # switch: delay (None = missed); stationary: false alarms
    for case in cases:
        at = fires[case.name]
        if case.kind == "switch":
            after = [i for i in at if i >= case.switch_at]
            pre_switch_alarms += len(at) - len(after)
            if after:
                delays.append(after[0] - case.switch_at)
                per_case[case.name] = delays[-1]
            else:
                missed += 1
                per_case[case.name] = None
        else:
            stationary_events += len(case.texts)
            stationary_alarms += len(at)
            per_case[case.name] = len(at)
    switches = sum(1 for c in cases if c.kind == "switch")
    return {
        "switches": switches,
        "detected": len(delays),
        "missed": missed,
        "median_delay": statistics.median(delays) if delays else None,
        "mean_delay": statistics.fmean(delays) if delays else None,
        "p90_delay": float(np.percentile(delays, 90)) if delays else None,
        "false_alarms_before_switch": pre_switch_alarms,
        "stationary_events": stationary_events,
        "false_alarms": stationary_alarms,
        "false_alarms_per_10k": 10_000 * stationary_alarms / stationary_events if stationary_events else None,
        "events_between_false_alarms": (stationary_events / stationary_alarms) if stationary_alarms else None,
        "cases": per_case,
    }


def compare_with_river(results: dict) -> dict:
    """The issue's check: KL at least as good as the best river detector on one measure, no worse on the other."""
    d = results["detectors"]
    if "kl" not in d:
        return {}
    kl = d["kl"]
    out = {"kl_median_delay_ok": kl["median_delay"] is not None and kl["median_delay"] <= 300,
           "kl_false_alarms_ok": kl["false_alarms_per_10k"] is not None and kl["false_alarms_per_10k"] <= 1.0}
    river = {name: s for name, s in d.items() if name in ("adwin", "page-hinkley", "kswin")}
    if river:
        def delay(s):  # a missed switch counts as the whole segment
            return (s["median_delay"] if s["median_delay"] is not None else math.inf, s["missed"])

        best_delay = min(river, key=lambda n: delay(river[n]))
        best_fa = min(river, key=lambda n: river[n]["false_alarms_per_10k"])
        better_delay = delay(kl) <= delay(river[best_delay])
        better_fa = kl["false_alarms_per_10k"] <= river[best_fa]["false_alarms_per_10k"]
        out.update({"best_river_by_delay": best_delay, "best_river_by_false_alarms": best_fa,
                    "kl_delay_at_least_as_good": better_delay, "kl_false_alarms_at_least_as_good": better_fa})
    return out


def run_drift(events: list[MemoryEvent], drift: DriftConfig, detectors: list[str], seeds: list[int],
              n_before: int = 700, n_after: int = 500, stationary_len: int = 20_000,
              progress: Callable[[int], None] = lambda _n: None) -> dict:
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector {unknown[0]!r} (known: {', '.join(DETECTORS)})")
    if n_before <= drift.baseline_size:
        raise ValueError(f"n_before ({n_before}) must exceed drift.baseline_size ({drift.baseline_size}) so the "
                         f"detectors monitor before the switch")
    cases = build_cases(events, seeds, n_before, n_after, stationary_len)
    results = {"detectors": {}, "setup": {
        "seeds": seeds, "n_before": n_before, "n_after": n_after, "stationary_len": stationary_len,
        "switch_streams": sum(c.kind == "switch" for c in cases),
        "stationary_streams": [c.name for c in cases if c.kind == "stationary"],
        "drift_config": {k: v for k, v in drift.kl_params().items()},
        "signal_for_river": "per-event surprise under the baseline hashed-word distribution (nats/word)"}}
    for detector in detectors:
        started = time.perf_counter()
        fires = {}
        for case in cases:
            fires[case.name] = _run_case(case, detector, drift, seeds[0])
            progress(len(case.texts))
        summary = _summarise(cases, fires)
        summary["seconds"] = time.perf_counter() - started
        results["detectors"][detector] = summary
    results["comparison"] = compare_with_river(results)
    return results


def progress_total(events: list[MemoryEvent], detectors: list[str], seeds: list[int], n_before: int, n_after: int,
                   stationary_len: int) -> int:
    domains = {e.domain for e in events if e.domain is not None}
    n = len(domains)
    return len(detectors) * (len(seeds) * n * (n - 1) * (n_before + n_after) + (n + 1) * stationary_len)
