"""Benchmarks are commands that print numbers and write JSON/Markdown/PNG; these keep them runnable and their
outputs well-formed on tiny settings (the numbers themselves are measured, not asserted: docs/benchmarks.md)."""

import json
import os
import stat
import statistics
import math

import pytest
from click.testing import CliRunner

from memstream.samples.public_stream import DOMAINS, load_public_stream
from memstream.cli import cli

TINY_MODEL = ["--set", "model.base=memstream-byte", "--set", "model.d_model=32", "--set", "model.n_layers=1", "--set", "model.n_heads=2",
              "--set", "model.d_ff=64", "--set", "model.max_seq_len=64", "--set", "model.lora_r=4",
              "--set", "train.batch_size=4", "--set", "ewc.fisher_samples=4", "--set", "drift.baseline_size=60",
              "--set", "drift.window=30", "--set", "drift.n_bootstrap=20"]


def _invoke(args, exit_code=0):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == exit_code, result.output
    return result.output


def test_public_stream_has_eight_real_text_domains_of_equal_size():
    events = load_public_stream()
    by_domain = {}
    for e in events:
        by_domain.setdefault(e.domain, []).append(e)
    assert tuple(by_domain) == DOMAINS
    assert {len(v) for v in by_domain.values()} == {1000}
    assert len({e.id for e in events}) == len(events)  # no duplicate chunk
    assert "def " in " ".join(e.text for e in by_domain["code"])
    assert "License" in " ".join(e.text for e in by_domain["legal"])


@pytest.mark.slow
def test_bench_forgetting_writes_json_markdown_and_plots(tmp_path):
    stream = tmp_path / "events.jsonl"
    events = [e for e in load_public_stream() if e.domain in ("code", "legal", "changelog")]
    stream.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
    out = tmp_path / "f.json"
    output = _invoke(["bench", "forgetting", str(stream), "--strategies", "naive,replay+ewc,joint",
                      "--seeds", "0,1", "--steps", "3", "--foundation-steps", "3", "--eval-per-domain", "8",
                      "--foundation-per-domain", "8", "--train-per-domain", "24", "--json", str(out),
                      "--markdown", str(tmp_path / "f.md"), "--plots", str(tmp_path / "plots"), *TINY_MODEL])
    assert "forgetting_ratio_vs_naive" in output
    data = json.loads(out.read_text())
    assert set(data["strategies"]) == {"naive", "replay+ewc", "joint"}
    assert data["machine"]["cores"] == os.cpu_count() and data["machine"]["torch_threads"] >= 1
    assert data["machine"]["cpu_bf16"] is False  # the suite pins float32 on every CPU
    for s in data["strategies"].values():
        assert {"forgetting", "plasticity", "final_loss", "bwt", "fwt", "R", "seconds"} <= set(s)
        assert len(s["R"]) == 3 and all(len(row) == 3 and all(math.isfinite(x) for x in row) for row in s["R"])
        assert len(s["R_per_seed"]) == 2
    assert data["strategies"]["replay+ewc"]["stages"][1]["replay"] > 0
    assert data["strategies"]["naive"]["stages"][1]["replay"] == 0
    assert data["strategies"]["joint"]["stages"][2]["new"] == 8 * 3 + 24 * 3  # everything seen so far
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["forgetting-R.png", "forgetting-loss-per-domain.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert "| replay+ewc |" in (tmp_path / "f.md").read_text()


def test_bench_forgetting_explains_a_stream_without_domains(tmp_path):
    stream = tmp_path / "events.jsonl"
    stream.write_text(json.dumps({"v": 1, "profile": "p", "ts": 1.0, "kind": "note", "text": "hello"}) + "\n")
    result = CliRunner().invoke(cli, ["bench", "forgetting", str(stream)])
    assert result.exit_code != 0
    assert "at least 2 domains" in result.output


def test_bench_drift_reports_every_detector_on_every_kind_of_stream(tmp_path):
    stream = tmp_path / "events.jsonl"
    events = [e for e in load_public_stream() if e.domain in ("legal", "copyright", "code")]
    stream.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in events))
    out = tmp_path / "d.json"
    output = _invoke(["bench", "drift", str(stream), "--seeds", "0", "--before", "100", "--after", "80", "--ramp",
                      "100", "--recur", "80", "--stationary", "300", "--json", str(out), "--markdown",
                      str(tmp_path / "d.md"), *TINY_MODEL])
    data = json.loads(out.read_text())
    assert set(data["detectors"]) == {"memstream", "kl", "adwin", "page-hinkley", "kswin", "always"}
    # 6 ordered pairs; gradual: the similar pair (legal, copyright) and each domain with the next
    assert data["setup"]["streams"] == {"switch": 6, "gradual": 3, "recurring": 3, "stationary": 4}
    always = data["detectors"]["always"]
    # fires as soon as it may: on every switch point, within the 30 events a rebuilt baseline (60) still lacks
    # after taking the last window (30), and about once per re-collected baseline when stationary
    assert always["summary"]["abrupt"]["missed"] == 0 and always["summary"]["abrupt"]["max_delay"] < 30
    assert always["summary"]["stationary"]["false_alarms"] >= 4 * (300 // 60 - 1)
    cases = data["detectors"]["memstream"]["cases"]
    assert cases["legal->copyright seed 0"]["similar"] and not cases["legal->code seed 0"]["similar"]
    assert len(cases["legal->copyright->legal seed 0"]["delays"]) == 2
    assert {"no_misses", "p90_delay_ok", "false_alarms_ok", "median_delay_ok"} <= set(data["checks"])
    assert "| memstream |" in (tmp_path / "d.md").read_text() and "no_misses" in output


@pytest.mark.slow
def test_bench_consolidate_measures_ewc_overhead_fisher_and_flatness(tmp_path):
    out = tmp_path / "c.json"
    output = _invoke(["bench", "consolidate", "--repeats", "1", "--small", "200", "--large", "1000",
                      "--batch-new", "40", "--json", str(out), *TINY_MODEL])
    assert "EWC vs plain" in output
    data = json.loads(out.read_text())
    step = data["step"]
    # every loop was measured once per repeat; memstream's figure is a difference of two runs (its gate's
    # evaluations cancel), so on a loaded machine only the bare loop's own elapsed time is sure to be positive
    assert {k: len(v) for k, v in step["runs"].items()} == {"ours": 1, "ewc": 1, "bare": 1}
    assert step["seconds_per_step_bare_peft"] > 0 and step["short_steps"] < step["long_steps"]
    assert math.isfinite(step["memstream_over_bare_ratio"]) and math.isfinite(step["ewc_overhead_ratio"])
    assert data["load_once"]["base_loads_after_two_runs"] == 1
    assert step["matmul_gflops"] > 0 and "MFU" in output
    for side in ("ours", "bare"):  # the work both loops did, counted
        assert 0 < step[f"{side}_tokens_real"] <= step[f"{side}_tokens_padded"] and step[f"{side}_train_flops"] > 0
        assert 0 < step[f"{side}_mfu_real_tokens"] <= step[f"{side}_mfu"]
    assert step["ours_padding_share"] <= step["bare_padding_share"]  # length-grouped vs random batches
    assert data["fisher"]["fisher_examples"] == 4
    assert data["flat"]["large_events"] == 1000 and data["flat"]["ratio_large_over_small"] > 0


def test_bench_recall_writes_json_markdown_and_a_plot(tmp_path):
    out = tmp_path / "r.json"
    output = _invoke(["bench", "recall", "--strategies", "naive,replay+ewc,memstream", "--seeds", "0",
                      "--phases", "2", "--facts-per-phase", "2", "--json", str(out), "--markdown", str(tmp_path / "r.md"),
                      "--plots", str(tmp_path / "plots"), "--set", "train.epochs=1", *TINY_MODEL])
    assert "phase1_at_end" in output
    data = json.loads(out.read_text())
    assert set(data["strategies"]) == {"naive", "replay+ewc", "memstream"}
    for s in data["strategies"].values():
        assert len(s["R"]) == 2 and all(len(row) == 2 and all(0 <= x <= 1 for x in row) for row in s["R"])
        assert math.isfinite(s["general_loss_ratio"]) and s["general_loss_ratio"] > 0
        assert len(s["answers_last_seed"]) == 8  # 2 phases x 2 facts x 2 held-out questions
        assert len(s["C"]) == 2 and all(len(row) == 2 and all(0 < x < 1 for x in row) for row in s["C"])
        assert len(s["L"]) == 2 and all(len(row) == 2 and all(x > 0 for x in row) for row in s["L"])
        assert s["choice_final"] == pytest.approx(sum(s["C"][-1]) / 2)
        assert s["answer_loss_right_after"] == pytest.approx((s["L"][0][0] + s["L"][1][1]) / 2)
    assert data["setup"]["choice_chance"] == 1 / 8 and len(data["setup"]["base_choice"]) == 2
    assert len(data["setup"]["base_answer_loss"]) == 2
    assert data["strategies"]["replay+ewc"]["phases"][0][1]["replay"] > 0
    assert data["strategies"]["naive"]["phases"][0][1]["replay"] == 0
    assert data["strategies"]["memstream"]["phases"][0][0]["status"] in ("accepted", "rejected")
    assert (tmp_path / "plots" / "recall-R.png").read_bytes()[:4] == b"\x89PNG"
    assert "| replay+ewc |" in (tmp_path / "r.md").read_text()


def test_bench_recall_tells_the_diary_person_and_reports_the_in_context_ceiling_and_each_runs_cost(tmp_path):
    out = tmp_path / "r.json"
    _invoke(["bench", "recall", "--people", "diary", "--strategies", "memstream", "--seeds", "0", "--phases", "4",
             "--facts-per-phase", "1", "--json", str(out), "--set", "train.epochs=1", "--set", "train.views=2",
             "--set", "train.objective=ce+distill", *TINY_MODEL])
    data = json.loads(out.read_text())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # a report others may read, as a plain open writes it
    assert data["setup"]["people"] == "diary" and len(data["setup"]["base_recall_in_context"]) == 4
    assert data["setup"]["dtype"] == "float32"  # the weights it ran on (the suite pins float32 on every CPU)
    runs = data["strategies"]["memstream"]["phases"][0]
    assert len(runs) == 4 and runs[1]["tokens"] > 0 and runs[1]["views"] > 0
    assert runs[1]["kl_base_new"] is None or runs[1]["kl_base_new"] >= 0
    refused = _invoke(["bench", "recall", "--people", "diary", "--phases", "5", "--seeds", "0", *TINY_MODEL],
                      exit_code=1)
    assert "phases must be between 1 and 4" in refused


def test_bench_recall_offers_every_person_and_names_every_strategy_it_knows():
    from memstream.bench.recall import PEOPLE, STRATEGIES

    options = {p.name: p for p in cli.commands["bench"].commands["recall"].params}
    assert list(options["people"].type.choices) == list(PEOPLE)
    assert options["people"].help.split(":")[1].count("(") == len(PEOPLE)
    named = options["strategies"].help.removeprefix("Comma-separated: ").removesuffix(".").split(", ")
    assert named == list(STRATEGIES)


def test_bench_idle_counts_the_cpu_of_a_whole_process_tree():
    """A parent that sleeps over a child that spins: the tree's CPU is the child's, and the sleeper's is near 0."""
    import subprocess
    import sys

    from memstream.bench.idle import measure, process_tree

    spin = "import subprocess, sys; c = subprocess.Popen([sys.executable, '-c', 'while True: pass']); c.wait()"
    parent = subprocess.Popen([sys.executable, "-c", spin])
    try:
        for _ in range(100):  # the child has started
            if len(process_tree(parent.pid)) == 2:
                break
            __import__("time").sleep(0.05)
        result = measure(parent.pid, 1.5)
    finally:
        for pid in reversed(process_tree(parent.pid)):
            os.kill(pid, 9)
        parent.wait()
    sleeper, spinner = result["processes"]
    # the spinner's share depends on what else the machine runs (a fifth of a core under the suite's load):
    # it need only be well above the sleeper's
    assert sleeper["pid"] == parent.pid and sleeper["cpu_percent"] < 5 < spinner["cpu_percent"]
    assert result["cpu_percent"] == pytest.approx(
        sleeper["cpu_percent"] + spinner["cpu_percent"], abs=0.02)


def test_bench_brokers_measures_every_rate_and_idle_cpu_of_a_broker(tmp_path):
    out = tmp_path / "brokers.json"
    text = _invoke(["bench", "brokers", "--engines", "embedded", "--events", "300", "--profiles", "3",
                    "--idle-seconds", "1", "--json", str(out)])
    assert "events/s, ingest app (no training)" in text and "kafka" not in text.split("\n", 1)[0]
    embedded = json.loads(out.read_text())["embedded"]
    assert embedded["start_s"] > 0 and min(embedded["publish"], embedded["plain"], embedded["ingest"]) > 0
    assert embedded["idle_broker_cpu_percent"] >= 0 and embedded["idle_broker_and_worker_cpu_percent"] >= 0
    assert 0 < embedded["broker_rss_idle_mib"] <= embedded["broker_rss_after_mib"] * 2
    assert "--engines: pulsar; choose from embedded, kafka" in _invoke(["bench", "brokers", "--engines", "pulsar"],
                                                                      exit_code=2)


def test_bench_trainer_computes_one_plan_in_process_and_in_a_trainer_process_in_alternating_pairs(tmp_path):
    out = tmp_path / "trainer.json"
    text = _invoke(["bench", "trainer", "--events", "30", "--threads", "1", "--pairs", "2", "--json", str(out), *TINY_MODEL,
                    "--set", "train.foundation_epochs=2"])
    assert "ratio trainer process / in process" in text
    results = json.loads(out.read_text())
    inside, outside = results["in_process"], results["trainer_process"]
    assert inside["status"] == outside["status"] == "accepted" and inside["steps"] == outside["steps"] > 0
    assert outside["wall_s"] >= outside["duration_s"] > 0 and results["ratio"] > 0
    assert results["waiting_cpu_percent"] < 50  # it waits on the pipe, not in a busy loop
    assert len(results["runs"]["in_process"]) == len(results["runs"]["trainer_process"]) == len(results["pair_ratios"]) == 2
    assert results["ratio"] == statistics.median(results["pair_ratios"])
    first_pair = [line.split(", ")[1].split(":")[0] for line in text.splitlines() if line.startswith("== pair")]
    assert first_pair == ["in process", "trainer process", "trainer process", "in process"]
