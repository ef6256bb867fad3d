"""`memstream learn` prints a readable summary for every outcome a run can have, without --json."""

from __future__ import annotations

import itertools
import json

import pytest

from learner.training.plan import STATUSES, RunResult
from memstream.cli.learn import print_summary
from tests.conftest import TINY, run_cli, write_jsonl

MEASURES = {
    "no probe": {"loss_new_before": 5.1, "loss_new_after": 0.2, "loss_probe_before": None,
                 "loss_probe_after": None},
    "probe": {"loss_new_before": 2.4, "loss_new_after": 0.9, "loss_probe_before": 0.8, "loss_probe_after": 0.85},
    "base text": {"loss_new_before": 5.1, "loss_new_after": 0.2, "loss_probe_before": None,
                  "loss_probe_after": None, "loss_base_before": 2.13, "loss_base_after": 2.98},
    "nothing measured": {},
}


def summary_of(report: dict) -> dict:
    return {"events": 24, "skipped_already_learned": 0, "invalid": 0, "invalid_reasons": {}, "quality_dropped": 0,
            "consolidations": [{"event_index": None, "outcome": report["status"], **report}],
            "accepted": int(report["accepted"]), "rejected": int(not report["accepted"]),
            "drift_alerts": [{"profile": "g", "event_index": 3, "detector": "kl", "divergence": None,
                              "threshold": 0.5, "top_features": []}],
            "profiles": {"g": {"events_seen": 24, "current_version": report["version"]}}, "seconds": 1.5}


@pytest.mark.parametrize("status,measures,mode", itertools.product(STATUSES, MEASURES, ("lora", "foundation")))
def test_the_summary_prints_every_status_with_or_without_each_measure(status, measures, mode, capsys):
    run = RunResult(run_id="r", profile="g", trigger="manual", mode=mode, status=status, reason="why it ended",
                    parent_version=None, version=1 if status == "accepted" else None,
                    duration_s=float("nan") if measures == "nothing measured" else 3.25,
                    metrics={k: float("nan") if v is None else v for k, v in MEASURES[measures].items()})
    print_summary(summary_of(run.report()))
    lines = capsys.readouterr().out.splitlines()
    run_line = next(line for line in lines if line.startswith("  [g] end of input:"))
    assert f"{mode} (manual) -> {'v1' if status == 'accepted' else 'no version'}, {status}" in run_line
    assert ("why it ended" in run_line) == (status != "accepted")
    assert ("probe loss 0.800 -> 0.850" in run_line) == (measures == "probe")
    assert ("base text loss 2.130 -> 2.980" in run_line) == (measures == "base text")
    assert ("3.2s" in run_line) == (measures != "nothing measured")
    assert "  [g] event 3: kl n/a > 0.500; rose: -" in lines


@pytest.mark.slow
@pytest.mark.parametrize("faults", [None, {"train.step": {"action": "nan"}}], ids=["learned", "aborted"])
def test_learn_prints_its_summary_on_the_byte_model(faults, tmp_path, small_stream):
    events = write_jsonl(tmp_path / "events.jsonl", small_stream[:200])
    env = {}
    if faults:
        (tmp_path / "faults.json").write_text(json.dumps(faults))
        env["MEMSTREAM_FAULTS"] = str(tmp_path / "faults.json")
    out = run_cli("learn", str(events), "--state", str(tmp_path / "s"), "--consolidate-at-end",
                  *[a for o in TINY for a in ("--set", o)], env=env)
    lines = out.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("consolidations: "))
    alerts = next(i for i, line in enumerate(lines) if line.startswith("drift alerts: "))
    runs = lines[first + 1:alerts]
    assert runs and lines[-1].startswith("took "), out.stdout
    if faults:
        assert all(", aborted (" in line and "-> no version" in line for line in runs), runs
    else:
        assert "foundation" in runs[0] and ", accepted" in runs[0] and "-> v1" in runs[0]
        assert any("probe loss" in line for line in runs[1:]), runs
