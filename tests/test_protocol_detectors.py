"""One check suite for drift detectors (river's protocol), parametrized over every implementation."""

import copy
import json
import random

import pytest

from learner.drift.kl import KLDriftDetector
from learner.drift.scalar import ScalarDriftMonitor
from memstream.samples.stream import make_sample_stream
from contracts.events import MemoryEvent
from tests.conftest import run_detector as run


def text_stream(seed=0):
    events = make_sample_stream(n_per_phase=(400, 300), seed=seed, phases=[("cooking",), ("coding",)])
    return [MemoryEvent.from_dict(e).training_text for e in events]


def loss_stream(seed=0):
    rng = random.Random(seed)
    return [rng.gauss(2.0 if i < 400 else 2.6, 0.2) for i in range(700)]


DETECTORS = [
    pytest.param(lambda: KLDriftDetector(window=50, baseline_size=150, n_bootstrap=50, seed=1), text_stream,
                 id="kl"),
    pytest.param(lambda: ScalarDriftMonitor("adwin"), loss_stream, id="adwin-loss"),
    pytest.param(lambda: ScalarDriftMonitor("page-hinkley"), loss_stream, id="page-hinkley-loss"),
    pytest.param(lambda: ScalarDriftMonitor("kswin", seed=3), loss_stream, id="kswin-loss"),
]




@pytest.mark.parametrize("make, stream", DETECTORS)
def test_detects_the_switch_and_reports_it(make, stream):
    det = make()
    fired = run(det, stream())
    assert fired and fired[0] >= 390, fired
    report = det.last_report.to_dict()
    assert {"detector", "divergence", "threshold", "window", "baseline_size", "top_features"} <= set(report)
    json.dumps(report)


@pytest.mark.parametrize("make, stream", DETECTORS)
def test_same_seed_same_result_and_clone(make, stream):
    data = stream(seed=4)
    assert run(make(), data) == run(make(), data) == run(make().clone(), data)


@pytest.mark.parametrize("make, stream", DETECTORS)
def test_inputs_unchanged(make, stream):
    data = stream()
    before = copy.deepcopy(data)
    run(make(), data)
    assert data == before


@pytest.mark.parametrize("make, stream", DETECTORS)
def test_json_snapshot_restores_a_detector_that_goes_on(make, stream):
    data = stream(seed=2)
    det = make()
    run(det, data[:300])
    restored = type(det).restore(json.loads(json.dumps(det.snapshot())))
    assert restored.events_seen == det.events_seen
    assert run(restored, data[300:]) == run(det, data[300:])


@pytest.mark.parametrize("make, stream", DETECTORS)
def test_drift_flag_lasts_one_update(make, stream):
    det = make()
    data = stream()
    fired = run(det, data)
    det.update(data[-1])
    assert fired and not det.drift_detected
