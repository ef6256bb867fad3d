"""What memstream guarantees across the learner, the worker's core and the CLI.

Nothing lost, nothing learned twice, one writer per profile, one clear line for bad input — checked
on the worker's core (no event loop), the learner and the CLI, with real files and a real (tiny) model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from learner.config import load_config
from contracts.events import InvalidEvent, MemoryEvent
from learner.online import OnlineLearner
from memstream.samples.stream import make_sample_stream
from memstream.cli import cli
from contracts.codec import EventCodec
from streams.ingest import IngestCore
from streams.settings import StreamConfig
from tests.conftest import TINY, write_jsonl


def stream_config(*extra: str):
    return load_config(overrides=TINY + ["scheduler.count=40", "train.foundation_min_events=20", *extra],
                       environ={}, root=StreamConfig)


def wire(events):
    codec = EventCodec()
    return [codec.encode_memory({"v": 1, **e}) for e in events]


@contextmanager
def locked_by_another_process(directory: Path):
    """Hold a profile's writer lock from a second process (as `memstream learn` would)."""
    directory.mkdir(parents=True, exist_ok=True)
    code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX);"
            " os.pwrite(fd, str(os.getpid()).encode(), 0); print('locked', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory / ".writer.lock")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    try:
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(10)


# -- a failed checkpoint leaves the EWC state as the disk says --------------------------------
def test_a_failed_checkpoint_does_not_count_the_fisher_twice(tmp_path, monkeypatch, small_stream):
    rules = tmp_path / "faults.json"
    rules.write_text("{}")
    monkeypatch.setenv("MEMSTREAM_FAULTS", str(rules))
    cfg = load_config(overrides=TINY + ["scheduler.count=100000", "drift.enabled=false"], environ={})
    learner = OnlineLearner("alice", cfg, tmp_path / "state")
    learner.learn_many(small_stream[:100])
    assert learner.consolidate().accepted  # v1, the byte model's foundation
    learner.learn_many(small_stream[100:160])
    assert learner.consolidate().version == 2 and learner.ewc.updates == 1
    learner.learn_many(small_stream[160:220])
    rules.write_text(json.dumps({"registry.commit": {"action": "oserror", "errno": "ENOSPC"}}))
    failed = learner.consolidate()
    assert not failed.accepted and "No space left on device" in failed.reason
    assert learner.ewc.updates == 1 and learner.registry.current_version == 2
    rules.write_text("{}")
    retried = learner.consolidate()
    assert retried.accepted and retried.version == 3
    assert ewc_updates(learner.registry.version_dir(3) / "ewc.safetensors") == 2  # v2's and this run's, once each


def ewc_updates(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["ewc"])["updates"]


# -- a locked profile waits without stalling the others ---------------------------------------
def test_a_locked_profile_waits_while_the_others_flow(tmp_path):
    core = IngestCore(stream_config("worker.session_timeout_s=30"), tmp_path)
    ann = wire(make_sample_stream(n_per_phase=(3,), seed=1, profile="ann"))
    bo = wire(make_sample_stream(n_per_phase=(3,), seed=2, profile="bo"))
    with locked_by_another_process(tmp_path / "ann"):
        started = time.monotonic()
        assert core.handle("t", 0, 0, b"ann", ann[0]).parked
        assert not core.handle("t", 0, 1, b"bo", bo[0]).parked
        assert core.handle("t", 0, 2, b"ann", ann[1]).parked  # its order is kept behind the first
        assert time.monotonic() - started < 10  # nobody waited for the lock (the session timeout is 30 s)
        assert core.learners["bo"].events_seen == 1 and "ann" not in core.learners
        assert core.retry_parked() == []
    assert core.retry_parked() == [("t", 0, 0), ("t", 0, 2)]
    assert core.learners["ann"].events_seen == 2 and core.counts["dead_letters"] == 0
    core.close()


def test_a_lease_takes_over_from_the_last_lease_written_down_even_after_a_writer_died_taking_the_lock(tmp_path):
    """A process killed between taking the lock and writing its lease down left the lock file empty; the
    next lease still names the last holder the journal knows."""
    from learner.store.lock import LOCK_FILE, ProfileLock, read_leases

    with ProfileLock(tmp_path):
        pass
    (tmp_path / LOCK_FILE).write_bytes(b"")  # what the killed process left
    with ProfileLock(tmp_path):
        pass
    taken = [e for e in read_leases(tmp_path) if "acquired" in e]
    assert [e["previous_pid"] for e in taken] == [None, os.getpid()]


def test_a_profile_locked_too_long_goes_to_dead_letters_with_the_reason(tmp_path):
    core = IngestCore(stream_config("worker.locked_wait_s=0"), tmp_path)
    ann = wire(make_sample_stream(n_per_phase=(2,), seed=1, profile="ann"))
    with locked_by_another_process(tmp_path / "ann") as holder:
        assert core.handle("t", 0, 0, b"ann", ann[0]).parked
        assert core.retry_parked() == [("t", 0, 0)]
    (key, letter), = core.dead_letters
    assert key == b"ann" and "profile locked" in letter["reason"] and f"pid {holder.pid}" in letter["reason"]
    assert letter["value"] == ann[0]
    core.close()


# -- what must be published survives a crash; rollback and reset are published ---------------
def test_a_model_updated_event_is_published_after_a_crash_between_commit_and_send(tmp_path):
    core = IngestCore(stream_config(), tmp_path)
    for offset, value in enumerate(wire(make_sample_stream(n_per_phase=(60,), seed=4, profile="di"))):
        core.handle("t", 0, offset, b"di", value)
    core.start_runs()
    core.finish_runs()  # the version is committed; its ModelUpdated is in the outbox, written with it
    (entry,) = core.learners["di"].outbox.pending()
    for learner in core.learners.values():  # the worker dies here: nothing sent, nothing else saved
        learner.close()
    again = IngestCore(stream_config(), tmp_path)
    assert again.adopt_partitions("t", {0}) == ["di"]
    again.flush()
    (kind, key, event, _), = [m for m in again.outgoing().messages if m[0] == "model-updated"]
    assert event["id"] == entry["event"]["id"] and event["version"] == 1 and event["accepted"]
    again.close()


def test_rollback_and_reset_tell_inference_servers(tmp_path, small_stream):
    state = tmp_path / "state"
    learner = OnlineLearner("alice", load_config(overrides=TINY, environ={}), state)
    learner.learn_many(small_stream[:250])
    learner.save_state()
    learner.close()
    assert learner.registry.current_version >= 3
    runner = CliRunner()
    result = runner.invoke(cli, ["registry", "rollback", "2", "--state", str(state)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["registry", "reset", "--state", str(state)])
    assert result.exit_code == 0, result.output
    saved = json.loads((state / "alice" / "learner_state.json").read_text())
    rollback, reset = [e["event"] for e in saved["outbox"]["entries"]]
    assert rollback["action"] == "rollback" and rollback["version"] == 2
    assert rollback["adapter_path"] == "alice/versions/v0002/adapter_model.safetensors" and rollback["sha256"]
    assert reset["action"] == "reset" and reset["version"] is None and reset["id"] != rollback["id"]

    from consumers.hot_reload import AdapterHotReloader

    reloader = AdapterHotReloader(state, "alice", load_config(overrides=TINY, environ={}))
    assert reloader.handle(rollback) and reloader.version == 2
    assert not reloader.handle(rollback)  # the same event again (resent after a crash): nothing changes
    assert reloader.handle(reset) and reloader.version is None and not reloader.live.has_adapter


# -- ownership follows the partitions a profile's events came from ----------------------------
def test_profiles_are_adopted_by_the_partition_they_came_from_not_by_a_hash(tmp_path):
    from kafka.partitioner.default import murmur2

    profile = "x"
    hashed = (murmur2(profile.encode()) & 0x7FFFFFFF) % 3
    actual = (hashed + 1) % 3  # a producer with another partitioner put it elsewhere
    core = IngestCore(stream_config(), tmp_path)
    for offset, value in enumerate(wire(make_sample_stream(n_per_phase=(5,), seed=5, profile=profile))):
        core.handle("t", actual, offset, profile.encode(), value)
    core.close()
    other = IngestCore(stream_config(), tmp_path)
    assert other.adopt_partitions("t", {hashed}) == []  # the key's hash does not make it ours
    assert other.adopt_partitions("t", {actual}) == [profile]
    other.close()


@pytest.mark.parametrize("opened_by", ["adoption", "a redelivered event"])
def test_a_run_due_when_its_profile_moved_is_due_at_its_new_owner(tmp_path, opened_by):
    """The old owner counted every event of a run (25 trip the count, under ``scheduler.min_examples``) and
    saved them, then lost the partition before a beat started the run; no new event comes. The new owner
    opens the profile by adopting the partition, or (its lock still held then) through a redelivered
    event, counted already: the run is due there as it was at the old owner."""
    profile = "mover"
    settings = ("scheduler.count=25", "scheduler.min_examples=32", "train.foundation_min_events=15")
    values = wire(make_sample_stream(n_per_phase=(30,), seed=7, profile=profile))
    old = IngestCore(stream_config(*settings), tmp_path)
    for offset, value in enumerate(values):
        old.handle("t", 0, offset, profile.encode(), value)
    assert old.due == {profile: "count"}
    old.release_partitions({("t", 0)})  # before any beat started the run
    old.close()
    new = IngestCore(stream_config(*settings), tmp_path)
    if opened_by == "adoption":
        assert new.adopt_partitions("t", {0}) == [profile]
    else:
        new.handle("t", 0, len(values) - 1, profile.encode(), values[-1])
        assert new.counts["redelivered"] == 1 and new.counts["learned"] == 0
    assert new.due == {profile: "count"}
    assert new.start_runs() == [profile]
    new.close()

# -- the gate judges what a run learned; drift rebases only after an accepted run ---------------
def test_drift_is_rebased_only_after_an_accepted_run(tmp_path, small_stream):
    cfg = load_config(overrides=TINY + ["scheduler.count=100000", "scheduler.consolidate_on_drift=false"],
                      environ={})
    learner = OnlineLearner("alice", cfg, tmp_path)
    learner.learn_many(small_stream[:100])
    assert learner.consolidate().accepted  # the foundation
    steps = learner.learn_many(small_stream[100:])
    assert any(s.drift for s in steps) and learner.drift.state == "drifted"
    learner.config = load_config(overrides=TINY + ["train.lr=3.0", "train.grad_clip=0", "train.gate_tolerance=0",
                                                   "train.gate_max_forgetting=0"], environ={})
    refused = learner.consolidate()
    assert not refused.accepted, refused.reason
    assert learner.drift.state == "drifted"  # the shift was not learned: no new baseline, no second alert
    learner.config = cfg
    retried = learner.consolidate()
    assert retried.accepted and retried.attempt == 2, retried.reason
    assert learner.drift.state != "drifted"  # learned: the detector starts a baseline on the new data


# -- one clock ----------------------------------------------------------------------------------
def test_runs_finished_by_the_worker_keep_the_event_clock(tmp_path):
    """Backfilled events (a year old) still trigger by time: the worker stamps runs with event time."""
    core = IngestCore(stream_config("scheduler.count=100000", "scheduler.interval_s=86400",
                                    "scheduler.min_examples=10", "drift.enabled=false"), tmp_path)
    events = make_sample_stream(n_per_phase=(600,), seed=6, profile="ty")  # ~8 minutes apart, months ago
    for offset, value in enumerate(wire(events)):
        core.handle("t", 0, offset, b"ty", value)
        core.start_runs()
        core.finish_runs()
    days = (events[-1]["ts"] - events[0]["ts"]) / 86400
    runs = core.run_outcomes.total()
    assert runs >= int(days) - 1 >= 1, (runs, days)
    clock = core.learners["ty"].scheduler.last_consolidation_ts
    assert events[0]["ts"] <= clock <= events[-1]["ts"]  # event time, not the wall clock
    core.close()


def test_timestamps_in_milliseconds_are_refused_with_the_reason():
    with pytest.raises(InvalidEvent, match="looks like milliseconds"):
        MemoryEvent.from_dict({"v": 1, "profile": "a", "ts": 1767225600000, "kind": "note", "text": "x"})


def test_probe_events_from_the_past_do_not_count_as_covered_new_ones(tmp_path):
    core = IngestCore(stream_config("drift.enabled=false", "train.probe_size=16"), tmp_path)
    values = wire(make_sample_stream(n_per_phase=(140,), seed=7, profile="pe"))
    for offset, value in enumerate(values[:40]):
        core.handle("t", 0, offset, b"pe", value)
    core.start_runs(), core.finish_runs()
    for offset, value in enumerate(values[40:80], start=40):
        core.handle("t", 0, offset, b"pe", value)
    assert core.start_runs() == ["pe"]  # its probe comes from the reservoir now
    for offset, value in enumerate(values[80:110], start=80):  # arrive while the run computes
        core.handle("t", 0, offset, b"pe", value)
    core.finish_runs()
    assert core.learners["pe"].scheduler.new_examples == 30 == len(core.learners["pe"].recent)
    core.close()


# -- input as a new user writes it ------------------------------------------------------------
def test_learn_fills_what_publish_fills_and_applies_the_quality_gate(tmp_path):
    lines = [{"profile": "nu", "kind": "note", "text": f"The plumber comes on day {i} of the month."}
             for i in range(30)] + [{"profile": "nu", "kind": "note", "text": "ok"}]
    events = write_jsonl(tmp_path / "memories.jsonl", lines)
    result = CliRunner().invoke(cli, ["learn", str(events), "--state", str(tmp_path / "s"), "--json",
                                      *[a for o in TINY for a in ("--set", o)]])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["events"] == 30 and summary["invalid"] == 0 and summary["quality_dropped"] == 1


def test_learn_that_learned_nothing_because_every_line_was_bad_fails(tmp_path):
    events = tmp_path / "bad.jsonl"
    events.write_text('{"profile": "nu"}\n{not json\n')
    result = CliRunner().invoke(cli, ["learn", str(events), "--state", str(tmp_path / "s"),
                                      *[a for o in TINY for a in ("--set", o)]])
    assert result.exit_code == 1
    assert "nothing learned: all 2 lines of the input were invalid" in result.output


# -- clients load no torch -------------------------------------------------------------------
def test_importing_the_clients_loads_neither_torch_nor_river():
    code = ("import sys; import producers.producer, producers.sources, consumers.subscriber, consumers.hot_reload;"
            " print(sorted(m for m in ('torch', 'river', 'faust', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout


def test_a_reader_follows_versions_written_by_a_newer_memstream_with_more_settings():
    """A hot reloader (or `generate`) older than the worker reads only the model settings it knows."""
    from learner.store.versions import version_config

    class Written:  # what registry.read_file returns for a version's run.json, written by a newer worker
        def read_file(self, version, name):
            assert (version, name) == (3, "run.json")
            return json.dumps({"config": {"model": {"base": "memstream-byte", "lora_r": 4, "device": "cuda",
                                                    "future_model_key": 1},
                                          "scheduler": {"future_scheduler_key": 2}}}).encode()

    local = load_config(overrides=["model.device=cpu"], environ={})
    config = version_config(Written(), 3, local)
    assert (config.model.base, config.model.lora_r, config.model.device) == ("memstream-byte", 4, "cpu")


def test_a_run_without_a_probe_publishes_an_event_every_subscriber_can_decode():
    """A first run has no probe (its loss is NaN); the model-updated event must still decode."""
    import math

    from learner.training.plan import RunResult
    from contracts.codec import EventCodec

    result = RunResult(run_id="r", profile="ann", trigger="count", mode="lora", status="accepted", reason="first",
                       parent_version=None,
                       metrics={"loss_probe_before": math.nan, "loss_probe_origin": math.nan, "loss_new_after": 0.2})
    codec = EventCodec()
    event = codec.decode_map(codec.encode({"v": 1, **result.report(), "action": "train"}))
    assert event["metrics"]["loss_probe_before"] is None and event["metrics"]["loss_new_after"] == 0.2
