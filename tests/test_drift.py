"""KL drift detector: detection delay, no false alarm on a stationary stream, river protocol, persistence."""

import random

import pytest

from learner.config import DriftConfig
from learner.drift.kl import KLDriftDetector
from contracts.events import MemoryEvent
from memstream.samples.stream import DOMAINS, make_sample_stream
from tests.conftest import run_detector as run


def texts(events):
    return [MemoryEvent.from_dict(e).training_text for e in events]


def default_detector(**changes) -> KLDriftDetector:
    """The detector with the learner's default settings (``DriftConfig``)."""
    return KLDriftDetector(**DriftConfig(**changes).kl_params())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alert_within_500_events_of_a_domain_switch(seed):
    switch = 1500
    stream = texts(make_sample_stream(n_per_phase=(switch, 1000), seed=seed,
                                   phases=[("cooking", "gardening"), ("coding", "finance")]))
    fired = run(default_detector(), stream)
    assert fired, "no alert after the switch"
    assert switch <= fired[0] < switch + 500, fired


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_alert_on_a_shuffled_stationary_stream(seed):
    stream = texts(make_sample_stream(n_per_phase=(5000,), seed=seed, phases=[tuple(DOMAINS)]))
    random.Random(seed).shuffle(stream)
    assert run(default_detector(), stream) == []


def test_report_names_what_rose_and_fell():
    stream = texts(make_sample_stream(n_per_phase=(700, 400), seed=4, phases=[("cooking",), ("travel",)]))
    det = default_detector()
    run(det, stream)
    report = det.last_report
    assert report is not None and report.divergence > report.threshold
    rose = [f for f in report.top_features if f["direction"] == "rose"]
    fell = [f for f in report.top_features if f["direction"] == "fell"]
    assert all(f["window_p"] > f["baseline_p"] for f in rose)
    assert all(f["window_p"] < f["baseline_p"] for f in fell)
    travel_words = {w for words in DOMAINS["travel"].values() for phrase in words for w in phrase.lower().split()}
    assert any(f["feature"] in travel_words for f in rose)


def test_quiet_after_alert_until_rebase_then_monitors_the_new_baseline():
    phases = [("cooking",), ("travel",), ("travel",), ("coding",)]
    stream = texts(make_sample_stream(n_per_phase=(600, 300, 700, 600), seed=5, phases=phases))
    det = default_detector()
    fired = run(det, stream[:1600])
    assert len(fired) == 1 and 600 <= fired[0] < 900
    det.rebase()  # the learner consolidated on travel
    later = run(det, stream[1600:])
    assert later and later[0] < 500, later


def test_fixed_threshold_and_validation():
    det = KLDriftDetector(window=10, baseline_size=20, threshold=0.5)
    for _ in range(20):
        det.update("same words again")
    assert det.threshold_ == 0.5
    with pytest.raises(ValueError, match="baseline_size"):
        KLDriftDetector(window=100, baseline_size=50)
    with pytest.raises(ValueError, match="alpha"):
        KLDriftDetector(alpha=2)


def test_snapshot_restore_continues_identically():
    stream = texts(make_sample_stream(n_per_phase=(500, 300), seed=6, phases=[("cooking",), ("finance",)]))
    a = default_detector(window=50, baseline_size=200)
    for text in stream[:300]:
        a.update(text)
    b = KLDriftDetector.restore(a.snapshot())
    assert run(a, stream[300:]) == run(b, stream[300:])
    assert a.divergence_ == b.divergence_


def test_river_protocol_clone_and_seed_determinism():
    det = default_detector(window=50, baseline_size=200)
    clone = det.clone()
    assert isinstance(clone, KLDriftDetector) and clone.window == 50
    stream = texts(make_sample_stream(n_per_phase=(300, 200), seed=7, phases=[("cooking",), ("coding",)]))
    assert run(det, stream) == run(clone, stream)


# -- the learner's response to an alert ------------------------------------------------------
def test_an_alert_waits_for_enough_new_events_then_one_run_and_a_new_baseline(tmp_path, small_stream):
    from learner.config import load_config
    from learner.online import OnlineLearner
    from tests.conftest import TINY

    cfg = load_config(overrides=TINY + ["scheduler.count=100000", "scheduler.after_drift=50"], environ={})
    learner = OnlineLearner("alice", cfg, tmp_path)
    learner.learn_many(small_stream[:110])
    assert learner.consolidate().accepted  # the foundation
    alerts, runs = [], []
    for i, event in enumerate(small_stream[110:240], start=110):
        step = learner.learn_one(event)
        if step.drift:
            alerts.append(i)
        if step.consolidation is not None:
            runs.append((i, step.consolidation))
    assert len(alerts) == 1 and alerts[0] >= 120, alerts  # the phase switch, once
    # not at the alert: once 50 events of the new distribution (the alerting one first) have arrived
    assert len(runs) == 1 and runs[0][0] - alerts[0] == 49
    index, run = runs[0]
    assert run.trigger == "drift" and run.accepted, run.reason
    assert learner.drift.state == "warming"  # rebased on the new distribution after the accepted run
    assert sum(bool(s.drift) for s in learner.learn_many(small_stream[240:])) <= 1  # the next phase, not this one


@pytest.mark.parametrize("odd", ["", "   \n\t ", "Привет мир, как дела у тебя сегодня вечером", "日本語のテキストだけ",
                                 "word " * 2_000_000])
def test_one_odd_event_cannot_raise_an_alert_or_break_the_divergence(odd):
    import math

    stream = texts(make_sample_stream(n_per_phase=(800,), seed=8, phases=[("cooking", "gardening")]))
    det = default_detector()
    fired = run(det, stream[:700] + [odd] + stream[700:])
    assert fired == [] and math.isfinite(det.divergence_)
    assert det.is_monitoring
