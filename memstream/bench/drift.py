"""``memstream bench drift``: detection delay, missed detections and false alarms of every detector.

Streams (built from a domain-labelled stream, by default the public benchmark stream: 8 domains)
    switch      ``n_before`` events of domain A, then ``n_after`` of domain B, for every ordered pair
                (A, B) and seed. Pairs in :data:`memstream.samples.public_stream.SIMILAR` (legal → copyright,
                changelog → news, manual → admin, ...) are marked ``similar``: the hard case.
    gradual     ``n_before`` events of A, then ``ramp`` events in which B's share grows linearly from
                0 to 1 (half-way, at ``ramp / 2`` events, the mixture is 50% B), for each similar pair
                and each domain with the next one.
    recurring   A → B → A: ``n_before`` of A, ``recur_len`` of B, ``n_after`` of A again (two switch
                points, each with its own delay), for each domain with the next one.
    stationary  ``stationary_len`` events drawn i.i.d. from one domain, and from all domains mixed
                (varied prose): any detection is a false alarm.

Detectors, all under one policy: a baseline of ``drift.baseline_size`` events is collected first;
after every detection the baseline is rebuilt from the last ``drift.window`` events plus the next
ones (what the learner does after an accepted run on the new data).
    memstream     :class:`learner.drift.kl.KLDriftDetector` as configured (KL and ADWIN on surprise;
                  either raises the alert).
    kl            the same detector with its KL signal alone (``drift.surprise = ""``).
    adwin, page-hinkley, kswin
                  river's detectors on each event's surprise under the baseline's smoothed
                  hashed-word distribution, ``−(1/n_words) Σ log q(bucket(word))``: the same
                  features and the same scalar memstream's second signal uses.
    always        fires on every event it may (a reference no score may flatter itself against).

Measures: median and p90 detection delay (events after a switch point until the first detection),
missed switches (no detection before the next switch point or the stream's end), false alarms per
10,000 events on the stationary streams, microseconds per event, and every stream's result in
``cases``. ``checks`` holds the targets for memstream's detector (see ``TARGETS``).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Callable

import numpy as np

from learner.config import DriftConfig
from learner.drift.divergence import Reference, reference, surprise
from learner.drift.kl import KLDriftDetector
from learner.drift.scalar import make_river_detector
from contracts.events import MemoryEvent
from learner.drift.features import HashedWords
from memstream.samples.public_stream import SIMILAR
from memstream.bench.drift_cases import StreamCase, build_cases

__all__ = ["DETECTORS", "RIVER", "TARGETS", "ingest_cost", "run_drift", "SurpriseSignal"]

DETECTORS = ("memstream", "kl", "adwin", "page-hinkley", "kswin", "always")
RIVER = ("adwin", "page-hinkley", "kswin")
#: The targets memstream's detector is checked against.
TARGETS = {"max_p90_delay": 150, "max_false_alarms_per_10k": 1.0, "gradual_before_share": 0.5,
           "max_drift_us_per_event": 20.0}


class SurpriseSignal:
    """Per-event surprise under a baseline hashed-word distribution; the baseline follows the policy above.

    >>> s = SurpriseSignal(baseline_size=3, window=2)
    >>> [None if v is None else round(v, 3) for v in (s.update(t) for t in ["ab cd", "ab cd", "ab ef", "ab cd", "zz"])]
    [None, None, None, 0.906, 11.537]
    """

    def __init__(self, baseline_size: int, window: int, n_buckets: int = 1024, smoothing: float = 0.01):
        self.baseline_size = baseline_size
        self.n_buckets = n_buckets
        self.smoothing = smoothing
        self.features = HashedWords(n_buckets)
        self.recent: deque = deque(maxlen=window)
        self.collected: list[dict[int, int]] = []
        self.ref: Reference | None = None

    def update(self, text: str) -> float | None:
        counts = self.features(text)
        self.recent.append(counts)
        if self.ref is None:
            self.collected.append(counts)
            if len(self.collected) >= self.baseline_size:
                total = np.zeros(self.n_buckets)
                for event in self.collected:
                    for bucket, c in event.items():
                        total[bucket] += c
                self.ref = reference(total, self.smoothing)
                self.collected = []
            return None
        return surprise(counts, self.ref) if counts else None

    def rebase(self) -> None:
        self.ref = None
        self.collected = list(self.recent)


class _Runner:
    """One detector under the common policy: ``update(text)`` returns True when it fires."""

    def __init__(self, name: str, drift: DriftConfig, seed: int):
        self.name = name
        self.seed = seed
        if name in ("memstream", "kl"):
            params = {**drift.kl_params(), "seed": seed}
            if name == "kl":
                params["surprise"] = ""
            self.kl = KLDriftDetector(**params)
        else:
            self.signal = SurpriseSignal(drift.baseline_size, drift.window, drift.n_buckets, drift.smoothing)
            self.river = make_river_detector(name, seed) if name != "always" else None

    def update(self, text: str) -> bool:
        if self.name in ("memstream", "kl"):
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


def case_result(case: StreamCase, fired: list[int]) -> dict:
    """One stream's result: the delay after each switch point (None: missed) and the false alarms.

    >>> case_result(StreamCase("a->b->a", "recurring", ["x"] * 30, [10, 20]), [3, 14, 15, 29])
    {'kind': 'recurring', 'similar': False, 'switches': [10, 20], 'delays': [4, 9], 'false_alarms': 1}
    """
    bounds = [*case.switches, len(case.texts)]
    delays = []
    for start, end in zip(bounds, bounds[1:]):
        hits = [i for i in fired if start <= i < end]
        delays.append(hits[0] - start if hits else None)
    first = case.switches[0] if case.switches else len(case.texts)
    return {"kind": case.kind, "similar": case.similar, "switches": case.switches, "delays": delays,
            "false_alarms": sum(1 for i in fired if i < first)}


def _delay_summary(delays: list[int | None]) -> dict:
    found = [d for d in delays if d is not None]
    return {"switches": len(delays), "detected": len(found), "missed": len(delays) - len(found),
            "median_delay": statistics.median(found) if found else None,
            "p90_delay": float(np.percentile(found, 90)) if found else None,
            "max_delay": max(found) if found else None}


def summarise(cases: list[StreamCase], results: dict[str, dict]) -> dict:
    """Delay statistics per kind of stream (abrupt = switch + recurring), false alarms when stationary."""
    def delays(select: Callable[[dict], bool]) -> list[int | None]:
        return [d for r in results.values() if select(r) for d in r["delays"]]

    out = {kind: _delay_summary(delays(lambda r, k=kind: r["kind"] == k)) for kind in ("switch", "gradual", "recurring")}
    out["abrupt"] = _delay_summary(delays(lambda r: r["kind"] in ("switch", "recurring")))
    out["similar"] = _delay_summary(delays(lambda r: r["kind"] == "switch" and r["similar"]))
    ramp = {c.name: len(c.texts) - c.switches[0] for c in cases if c.kind == "gradual"}
    gradual = [(results[name]["delays"][0], n) for name, n in ramp.items()]
    out["gradual"]["before_half"] = sum(1 for d, n in gradual if d is not None and d < n * TARGETS["gradual_before_share"])
    stationary = [c for c in cases if c.kind == "stationary"]
    events = sum(len(c.texts) for c in stationary)
    alarms = sum(results[c.name]["false_alarms"] for c in stationary)
    out["stationary"] = {"events": events, "false_alarms": alarms,
                         "false_alarms_per_10k": 10_000 * alarms / events if events else None,
                         "events_between_false_alarms": events / alarms if alarms else None}
    out["false_alarms_before_switch"] = sum(r["false_alarms"] for r in results.values() if r["kind"] != "stationary")
    return out


def check_targets(detectors: dict) -> dict:
    """memstream's detector against the targets, and its median delay against the best river detector's."""
    if "memstream" not in detectors:
        return {}
    s = detectors["memstream"]["summary"]
    missed = s["abrupt"]["missed"] + s["gradual"]["missed"]
    checks = {
        "no_misses": missed == 0,
        "p90_delay_ok": s["abrupt"]["p90_delay"] is not None and s["abrupt"]["p90_delay"] <= TARGETS["max_p90_delay"],
        "false_alarms_ok": (s["stationary"]["false_alarms_per_10k"] or 0) <= TARGETS["max_false_alarms_per_10k"],
        "gradual_before_half": f"{s['gradual']['before_half']}/{s['gradual']['switches']}",
    }
    river = {n: d["summary"]["abrupt"] for n, d in detectors.items() if n in RIVER}
    if river:
        best = min(river, key=lambda n: (river[n]["missed"], river[n]["median_delay"] or float("inf")))
        checks["best_river"] = best
        checks["median_delay_vs_best_river"] = f"{s['abrupt']['median_delay']} vs {river[best]['median_delay']}"
        checks["median_delay_ok"] = (s["abrupt"]["median_delay"] is not None and river[best]["median_delay"] is not None
                                     and s["abrupt"]["median_delay"] <= river[best]["median_delay"])
    return checks


def run_drift(events: list[MemoryEvent], drift: DriftConfig, detectors: list[str], seeds: list[int],
              n_before: int = 700, n_after: int = 500, stationary_len: int = 20_000, ramp: int = 1000,
              recur_len: int = 1000, progress: Callable[[int], None] = lambda _n: None) -> dict:
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector {unknown[0]!r} (known: {', '.join(DETECTORS)})")
    if n_before <= drift.baseline_size:
        raise ValueError(f"n_before ({n_before}) must exceed drift.baseline_size ({drift.baseline_size}) so the "
                         f"detectors monitor before the switch")
    cases = build_cases(events, seeds, n_before, n_after, stationary_len, ramp, recur_len)
    results: dict = {"detectors": {}, "setup": {
        "seeds": seeds, "n_before": n_before, "n_after": n_after, "stationary_len": stationary_len, "ramp": ramp,
        "recur_len": recur_len, "streams": {k: sum(c.kind == k for c in cases)
                                            for k in ("switch", "gradual", "recurring", "stationary")},
        "similar_pairs": [list(p) for p in SIMILAR], "drift_config": dict(drift.kl_params()),
        "signal_for_river": "per-event surprise under the baseline hashed-word distribution (nats/word)"}}
    for detector in detectors:
        started = time.perf_counter()
        per_case = {}
        for case in cases:
            per_case[case.name] = case_result(case, _run_case(case, detector, drift, seeds[0]))
            progress(len(case.texts))
        seconds = time.perf_counter() - started
        n_events = sum(len(c.texts) for c in cases)
        results["detectors"][detector] = {"summary": summarise(cases, per_case), "seconds": seconds,
                                          "us_per_event": 1e6 * seconds / n_events, "cases": per_case}
    results["checks"] = check_targets(results["detectors"])
    return results


def ingest_cost(events: list[MemoryEvent], overrides: list[str], n: int = 4000, repeats: int = 3) -> dict:
    """What drift detection adds to :meth:`learner.online.OnlineLearner.learn_one`: µs per event with the
    detector on and off (the same events, the same learner otherwise, no consolidation), best of ``repeats``
    interleaved runs each. The detector is timed while it monitors: the first ``drift.baseline_size``
    events (and the one-off calibration they end with, reported on its own) are fed untimed.
    """
    import tempfile

    from learner.config import load_config
    from learner.online import OnlineLearner

    stream = [MemoryEvent.build({**e.to_dict(), "profile": "bench", "id": None}) for e in events]
    base = ["scheduler.count=100000000", "scheduler.interval_s=1e15", "replay.strategy=uniform", "quality.mode=off",
            "drift.loss_detector="]
    warm = load_config(overrides=[*overrides, *base], environ={}).drift.baseline_size
    if len(stream) < warm + 100:
        raise ValueError(f"the ingest cost needs more than {warm + 100} events, got {len(stream)}")
    timed = stream[warm: warm + n]
    best = {"on": float("inf"), "off": float("inf"), "calibration": float("inf")}
    for _ in range(repeats):
        for mode in ("on", "off"):
            cfg = load_config(overrides=[*overrides, *base, f"drift.enabled={'true' if mode == 'on' else 'false'}"],
                              environ={})
            with tempfile.TemporaryDirectory(prefix="memstream-drift-cost-") as state:
                learner = OnlineLearner("bench", cfg, state, auto_consolidate=False)
                for event in stream[: warm - 1]:
                    learner.learn_one(event)
                started = time.perf_counter()
                learner.learn_one(stream[warm - 1])  # the baseline's last event: calibration
                if mode == "on":
                    best["calibration"] = min(best["calibration"], time.perf_counter() - started)
                started = time.perf_counter()
                for event in timed:
                    learner.learn_one(event)
                best[mode] = min(best[mode], (time.perf_counter() - started) / len(timed) * 1e6)
                learner.close()
    return {"events": len(timed), "us_per_event_with_drift": best["on"], "us_per_event_without": best["off"],
            "drift_us_per_event": best["on"] - best["off"], "calibration_ms": 1e3 * best["calibration"]}


def progress_total(events: list[MemoryEvent], detectors: list[str], seeds: list[int], n_before: int, n_after: int,
                   stationary_len: int, ramp: int = 1000, recur_len: int = 1000) -> int:
    cases = build_cases(events, seeds[:1], n_before, n_after, 1, ramp, recur_len)
    per_seed = sum(len(c.texts) for c in cases if c.kind != "stationary")
    stationary = sum(1 for c in cases if c.kind == "stationary") * stationary_len
    return len(detectors) * (len(seeds) * per_seed + stationary)
