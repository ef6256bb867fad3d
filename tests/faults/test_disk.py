"""The disk fills up or turns read-only during a checkpoint: the run fails cleanly, the last good version
stays current, a ModelUpdated says why, and the worker recovers by itself once the disk is writable."""

from __future__ import annotations

import pytest

from learner.store.registry import ModelRegistry
from memstream.samples.stream import make_sample_stream
from tests.faults.helpers import check_state_dir, set_faults


@pytest.mark.slow
@pytest.mark.parametrize("errno_name, words", [("ENOSPC", "No space left on device"),
                                                ("EROFS", "Read-only file system")])
def test_checkpoint_on_a_full_or_read_only_disk_fails_cleanly_and_recovers(stack, monkeypatch, errno_name, words):
    stack.overrides += ["worker.checkpoint_retry_s=2"]
    events = make_sample_stream(n_per_phase=(150, 150), seed=30, profile="dee")
    faults = stack.root / "faults.json"
    set_faults(faults, {})
    monkeypatch.setenv("MEMSTREAM_FAULTS", str(faults))
    worker = stack.start_worker()
    seen: list[dict] = []
    with stack.subscriber("model-updated") as sub, stack.producer() as producer:
        def updates(predicate):
            def check():
                seen.extend(e for _k, e in sub.poll(1.0))
                return [e for e in seen if predicate(e)]
            return check

        producer.publish_many(events[:150])
        first = stack.wait_for(updates(lambda e: e["accepted"]), 150, "the foundation version")[0]
        # every write under the state directory now fails
        set_faults(faults, {"storage.write": {"action": "oserror", "errno": errno_name},
                            "storage.dir": {"action": "oserror", "errno": errno_name}})
        producer.publish_many(events[150:])
        failed = stack.wait_for(updates(lambda e: "checkpoint failed" in e["reason"]), 150,
                                "a ModelUpdated that says the checkpoint failed")[0]
        assert failed["accepted"] is False and words in failed["reason"]
        assert f"version {first['version']} stays current" in failed["reason"]
        registry = ModelRegistry.open(stack.state, "dee", "", writer=False)
        assert registry.current_version == first["version"]
        assert worker.poll() is None, "the worker must survive a full disk"
        assert "offsets held back" in worker.log_path.read_text(errors="replace")

        set_faults(faults, {})  # space freed / remounted read-write
        recovered = stack.wait_for(updates(lambda e: e["accepted"] and e["version"] != first["version"]), 150,
                                   "a new version once the disk is writable")[0]
        assert recovered["parent_version"] == first["version"]
    stack.wait_for(lambda: stack.learner_state("dee").get("events_seen") == len(events), 60, "every event counted")
    stack.stop_all()
    check_state_dir(stack.state, ["dee"], {"dee": len(events)}, {"dee": first["version"]})
    assert stack.learner_state("dee")["events_seen"] == len(events)


@pytest.mark.slow
def test_slow_checkpoints_and_state_saves_keep_the_workers_timer_on_its_beat(stack, monkeypatch):
    """Committing a version writes whole files and a flush saves states (seconds on a slow disk): neither may
    hold up the timer that flushes, acks and starts runs — faust warns of a beat that outlasts its interval."""
    events = make_sample_stream(n_per_phase=(150,), seed=31, profile="eve")
    faults = stack.root / "faults.json"
    set_faults(faults, {"registry.commit": {"action": "delay", "seconds": 3},
                        "storage.write": {"action": "delay", "seconds": 1, "match": "learner_state.json"}})
    monkeypatch.setenv("MEMSTREAM_FAULTS", str(faults))
    worker = stack.start_worker()
    with stack.subscriber("model-updated") as sub, stack.producer() as producer:
        producer.publish_many(events)
        stack.wait_for(lambda: [e for _k, e in sub.poll(1.0) if e["accepted"]], 150, "a version, committed slowly")
    stack.wait_for(lambda: stack.learner_state("eve").get("events_seen") == len(events), 60, "every event counted")
    stack.stop_all()
    log = worker.log_path.read_text(errors="replace")
    assert "committing finished runs failed" not in log
    assert "is overlapping" not in log, [line for line in log.splitlines() if "overlapping" in line]
    check_state_dir(stack.state, ["eve"], {"eve": len(events)}, {"eve": 1})
