"""The real `memstream` command in subprocesses: learn, registry, generate, export, bad input, kill -9."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import TINY, memstream, run_cli, write_jsonl
from tests.faults.helpers import wait_exited


def sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture
def learned(tmp_path, small_stream):
    """One `learn` run over 360 events with the tiny model."""
    events = write_jsonl(tmp_path / "events.jsonl", small_stream)
    state = tmp_path / "state"
    out = run_cli("learn", str(events), "--state", str(state), "--json", *sets(TINY))
    return events, state, json.loads(out.stdout)


def test_learn_makes_foundation_and_lora_versions_with_lineage(learned):
    _, state, summary = learned
    assert summary["events"] == 360 and summary["invalid"] == 0
    modes = [c["mode"] for c in summary["consolidations"] if c["outcome"] == "accepted"]
    assert modes[0] == "foundation" and modes.count("lora") >= 2
    assert all(isinstance(c["event_index"], int) for c in summary["consolidations"])
    assert summary["drift_alerts"] and all("event_index" in a and a["top_features"] for a in summary["drift_alerts"])
    assert summary["final_version"] == summary["profiles"]["alice"]["current_version"]
    listing = run_cli("registry", "list", "--state", str(state)).stdout
    assert "foundation" in listing and f"* {'v' + str(summary['final_version']):>5}" in listing
    registry = json.loads(run_cli("registry", "list", "--state", str(state), "--json").stdout)
    parents = [e["parent_version"] for e in registry["training_history"] if e["version"]]
    versions = [e["version"] for e in registry["training_history"] if e["version"]]
    assert parents[0] is None and parents[1:] == versions[:-1]


def test_rerun_resumes_and_counts_nothing_twice(learned):
    events, state, first = learned
    again = json.loads(run_cli("learn", str(events), "--state", str(state), "--json", *sets(TINY)).stdout)
    assert again["events"] == 0 and again["skipped_already_learned"] == 360
    assert again["profiles"]["alice"]["events_seen"] == 360


def test_rollback_reset_show_generate_export(learned, tmp_path):
    _, state, summary = learned
    final = summary["final_version"]
    shown = json.loads(run_cli("registry", "show", "2", "--state", str(state), "--json").stdout)
    assert shown["verified"] and "adapter_model.safetensors" in shown["files"]
    run_cli("registry", "rollback", "2", "--state", str(state))
    assert json.loads(run_cli("registry", "list", "--state", str(state), "--json").stdout)["current_version"] == 2
    text = json.loads(run_cli("generate", "--state", str(state), "--prompt", "Any tips for dal?", "--json",
                                "--max-tokens", "20").stdout)
    assert text["version"] == 2 and isinstance(text["text"], str)
    out = tmp_path / "export"
    run_cli("export", str(out), "--state", str(state), "--version", str(final))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from learner.online import OnlineLearner
    from tests.conftest import load_config

    exported = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tokenizer("hé", add_special_tokens=False)["input_ids"] == [107, 198, 172]
    live = OnlineLearner("alice", load_config(overrides=TINY, environ={}), state).model_at(final)
    ids = torch.tensor([[1, 80, 90, 100]])
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, live.model(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)
    run_cli("registry", "reset", "--state", str(state))
    assert json.loads(run_cli("registry", "list", "--state", str(state), "--json").stdout)["current_version"] is None


def test_bad_lines_are_counted_and_skipped(tmp_path, small_stream):
    lines = [json.dumps(e).encode() for e in small_stream[:30]]
    lines[3] = b"{not json"
    lines[5] = b'{"v": 1, "profile": "alice", "ts": 1, "kind": "note"}'
    lines[7] = b"\xff\xfe bad bytes"
    lines[9] = json.dumps({**small_stream[9], "profile": "../etc"}).encode()
    events = tmp_path / "e.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = run_cli("learn", str(events), "--state", str(tmp_path / "s"), "--json", *sets(TINY))
    summary = json.loads(result.stdout)
    assert summary["events"] == 26 and summary["invalid"] == 4
    assert "skipped line 4: not valid JSON" in result.stderr
    assert "skipped line 8: not valid UTF-8" in result.stderr
    assert "skipped line 10: profile '../etc'" in result.stderr
    assert "skipped line 6: an event needs 'text'" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["learn", "missing.jsonl", "--state", "{tmp}/s"], "events file 'missing.jsonl' does not exist"),
    (["learn", "{events}", "--state", "{tmp}/s", "--set", "train.epoch=2"], "unknown config key 'train.epoch'"),
    (["learn", "{events}", "--state", "{tmp}/s", "--config", "{tmp}/none.toml"], "does not exist"),
    (["learn", "{events}", "--state", "{tmp}/no/such/dir"], "cannot be created"),
    (["registry", "list", "--state", "{tmp}/nowhere"], "state directory '{tmp}/nowhere' does not exist"),
    (["registry", "list", "--state", "{tmp}", "--profile", "a/b"], "profile 'a/b' must match"),
    (["registry", "rollback", "7", "--state", "{tmp}/s0"], "version 7 is not in the registry"),
])
def test_errors_are_one_readable_line(tmp_path, small_stream, args, message):
    events = write_jsonl(tmp_path / "e.jsonl", small_stream[:3])
    (tmp_path / "s0" / "alice").mkdir(parents=True)
    run_cli("learn", str(events), "--state", str(tmp_path / "s0"))
    fill = {"tmp": str(tmp_path), "events": str(events)}
    result = run_cli(*[a.format(**fill) for a in args], check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memstream: error:"), result.stderr
    assert message.format(**fill) in lines[0]
    assert "Traceback" not in result.stderr


def test_kill_during_consolidation_then_rerun(tmp_path, small_stream):
    """SIGKILL while a LoRA run trains: no corrupt version, and the rerun resumes to the same count."""
    events = write_jsonl(tmp_path / "events.jsonl", small_stream)
    state = tmp_path / "state"
    slow = TINY + ["train.epochs=100000", "train.max_steps=0"]  # a LoRA run that cannot finish first
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "memstream", "learn", str(events), "--state", str(state),
                             *sets(slow)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    seen = []
    deadline = time.time() + 300
    for line in proc.stderr:
        seen.append(line)
        if "consolidating (lora" in line and any("version 1 accepted" in s for s in seen):
            break
        assert time.time() < deadline, "no LoRA consolidation started"
    time.sleep(1.0)  # inside the training loop
    # while it writes: readers work and change nothing; another writer is refused
    listing = json.loads(run_cli("registry", "list", "--state", str(state), "--json").stdout)
    assert listing["current_version"] == 1
    refused = memstream("registry", "reset", "--state", str(state), check=False)
    assert refused.returncode == 2 and "is being written by another process (pid" in refused.stderr
    assert proc.poll() is None, "the learner should still be training"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    registry = json.loads((state / "alice" / "registry.json").read_text())
    assert registry["current_version"] == 1 and len(registry["training_history"]) == 1
    summary = json.loads(run_cli("learn", str(events), "--state", str(state), "--json", *sets(TINY)).stdout)
    assert summary["profiles"]["alice"]["events_seen"] == len(small_stream)
    registry = json.loads(run_cli("registry", "list", "--state", str(state), "--json").stdout)
    for entry in registry["training_history"]:
        if entry["version"] and not entry.get("pruned"):
            run_cli("registry", "show", str(entry["version"]), "--state", str(state))  # verifies sha256
    assert registry["current_version"] > 1


def test_several_profiles_from_stdin_each_get_their_own_registry(tmp_path, small_stream):
    mixed = []
    for i, e in enumerate(small_stream[:240]):
        mixed.append({**e, "profile": "alice" if i % 2 else "bob", "id": f"{i}"})
    data = "".join(json.dumps(e) + "\n" for e in mixed)
    state = tmp_path / "state"
    result = run_cli("learn", "-", "--state", str(state), "--json", *sets(TINY), stdin=data)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["profiles"]["alice"]["events_seen"] == summary["profiles"]["bob"]["events_seen"] == 120
    assert {c["profile"] for c in summary["consolidations"]} == {"alice", "bob"}
    assert "final_version" not in summary
    ambiguous = run_cli("registry", "list", "--state", str(state), check=False)
    assert ambiguous.returncode == 2 and "several profiles under" in ambiguous.stderr
    bob = json.loads(run_cli("registry", "list", "--state", str(state), "--profile", "bob", "--json").stdout)
    assert bob["profile"] == "bob" and bob["current_version"] == 1


def test_config_command_prints_every_setting(tmp_path):
    out = run_cli("config").stdout
    assert "[ewc]" in out and "lam = 1000.0" in out and "# EWC strength" in out
    effective = json.loads(run_cli("config", "--effective", "--set", "ewc.lam=5",
                                     env={"MEMSTREAM_TRAIN_EPOCHS": "7"}).stdout)
    assert effective["ewc"]["lam"] == 5.0 and effective["train"]["epochs"] == 7


def test_sigterm_during_consolidation_saves_state_and_writes_no_version(tmp_path, small_stream):
    events = write_jsonl(tmp_path / "events.jsonl", small_stream)
    state = tmp_path / "state"
    slow = TINY + ["train.epochs=100000", "train.max_steps=0"]  # a LoRA run that cannot finish first
    proc = subprocess.Popen([sys.executable, "-m", "memstream", "learn", str(events), "--state", str(state), "--json",
                             *sets(slow)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stderr:
        if "consolidating (lora" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM; state saved" in err
    summary = json.loads(out)
    assert summary["stopped"] is True
    seen = summary["profiles"]["alice"]["events_seen"]
    registry = json.loads((state / "alice" / "registry.json").read_text())
    assert registry["current_version"] == 1 and [e["status"] for e in registry["training_history"]] == ["accepted"]
    saved = json.loads((state / "alice" / "learner_state.json").read_text())
    assert saved["events_seen"] == seen and saved["recent"]["items"]  # the interrupted run's events wait
    rest = json.loads(run_cli("learn", str(events), "--state", str(state), "--json", *sets(TINY)).stdout)
    assert rest["skipped_already_learned"] == seen
    assert rest["profiles"]["alice"]["events_seen"] == len(small_stream)
    assert rest["consolidations"][0]["mode"] == "lora" and rest["consolidations"][0]["accepted"]


def test_stats_reports_lengths_noise_kinds_and_warnings_per_profile_and_run(tmp_path, small_stream):
    noise = [{"v": 1, "profile": "alice", "ts": 1.0e9 + i, "kind": "conversation", "prompt": "Got the list?",
              "response": text} for i, text in enumerate(["ok", "thanks!", "um lol", "hmm haha"] * 15)]
    long_note = {"v": 1, "profile": "alice", "ts": 1.0e9 + 99, "kind": "note", "text": "word " * 120}
    events = write_jsonl(tmp_path / "events.jsonl", small_stream[:150] + noise + [long_note])
    state = tmp_path / "state"
    run_cli("learn", str(events), "--state", str(state), *sets(TINY))
    [report] = json.loads(run_cli("stats", "--state", str(state), "--json").stdout)
    counted = report["memories"]
    assert counted["memories"] == 211  # every event that arrived, the dropped acknowledgements too
    assert (counted["acknowledgements"], counted["filler"], counted["long"]) == (30, 30, 1)
    assert counted["kinds"]["conversation"] >= 60 and counted["kinds"]["note"] >= 1
    assert counted["short"] + counted["medium"] + counted["long"] == 211
    assert any("acknowledgements or filler" in w for w in counted["warnings"])  # 60 of 211: 28% > 15%
    runs = [r for r in report["runs"] if r["memories"]]
    assert runs and all(r["memories"]["memories"] > 0 for r in runs)
    text = run_cli("stats", "--state", str(state)).stdout
    assert "profile alice: " in text and "warning: 60 of 211 memories are acknowledgements or filler" in text
    shown = run_cli("registry", "show", str(runs[-1]["version"]), "--state", str(state)).stdout
    assert "  memories\n" in shown and "short_share" in shown


def test_a_demo_stopped_by_sigterm_stops_its_worker_and_broker(tmp_path):
    import re

    demo = subprocess.Popen([sys.executable, "-m", "memstream", "demo", "--state", str(tmp_path / "demo"),
                             "--set", "model.base=memstream-byte"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    started, children = [], []
    try:
        for line in demo.stdout:
            started += re.findall(r"worker started \(pid (\d+)", line)
            if started:
                break
        assert started, "the demo never started its worker"
        worker = int(started[0])
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(demo.pid)], capture_output=True,
                                                   text=True).stdout.split()]
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(120) == 128 + signal.SIGTERM
        for pid in {worker, *children}:
            assert wait_exited(pid, 60), f"process {pid} outlived the demo"
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for pid in [int(p) for p in started] + children:  # what a failed check above left running
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
