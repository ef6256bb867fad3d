"""kill -9 at every kind of point, 20+ times in one run, against the real broker and worker processes.

Each cycle publishes a slice of the stream, starts a worker with one failpoint armed
(learner/failpoints.py) or a timer, lets it die (or kills it), and checks the state directory.
At the end a clean worker finishes the stream: every event is counted exactly once.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from learner.store.registry import ModelRegistry
from memstream.samples.stream import make_sample_stream
from tests.faults.helpers import check_state_dir, kill_group, set_faults

PROFILES = ["ann", "bob", "cyd"]
# A failpoint's cycle waits until it fires, whatever the machine's load: every cycle at a commit has a run
# due, the first profile's foundation, which no cycle before the last can commit (each crashes first).
FIRES_WITHIN_S = 240
CRASH_POINTS = [
    # (name, failpoint rules or None, how long to give it)
    ("state snapshot write", {"storage.write": {"action": "crash", "match": "learner_state.json"}}, FIRES_WITHIN_S),
    ("registry update", {"storage.write": {"action": "crash", "match": "registry.json"}}, FIRES_WITHIN_S),
    ("checkpoint directory write", {"storage.dir": {"action": "crash"}}, FIRES_WITHIN_S),
    ("between checkpoint and registry", {"registry.commit": {"action": "crash"}}, FIRES_WITHIN_S),
    ("after state saved, before offsets acked", {"state.saved": {"action": "crash", "after": 1}}, FIRES_WITHIN_S),
    ("during a consolidation", "consolidating", FIRES_WITHIN_S),
    ("random point of ingest", None, 4),
]
CYCLES = 21
# a crash at a commit needs a run first: there the trainer starts with the worker (as it does by default),
# its imports overlapping the worker's start and group join instead of following them
AT_A_COMMIT = {"registry update", "checkpoint directory write", "between checkpoint and registry"}


def _wait_exit_or_kill(stack, proc, seconds: float, log_marker: str | None = None) -> str:
    """"died" when the worker died on its own (a failpoint fired); else it is killed here, on ``log_marker``
    in its log ("marker") or after ``seconds`` ("timeout")."""
    deadline = time.monotonic() + seconds
    outcome = "timeout"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "died"
        if log_marker and log_marker in proc.log_path.read_text(errors="replace"):
            outcome = "marker"
            break
        time.sleep(0.05)
    kill_group(proc)
    return outcome


@pytest.mark.slow
def test_kill_9_twenty_times_at_every_kind_of_point_loses_and_corrupts_nothing(stack, monkeypatch):
    stack.overrides += ["scheduler.count=50"]  # versions are written often: more commits to crash into
    rng = random.Random(5)
    streams = [make_sample_stream(n_per_phase=(150, 150), seed=20 + i, profile=p) for i, p in enumerate(PROFILES)]
    events = [e for group in zip(*streams) for e in group]  # interleaved, each profile's order kept
    head = len(events) // 3  # enough up front that consolidations are due from the first cycles
    size = -(-(len(events) - head) // (CYCLES - 1))
    chunks = [events[:head]] + [events[head + i * size:head + (i + 1) * size] for i in range(CYCLES - 1)]
    faults = stack.root / "faults.json"
    set_faults(faults, {})
    monkeypatch.setenv("MEMSTREAM_FAULTS", str(faults))
    published = {p: 0 for p in PROFILES}
    versions: dict[str, int | None] = {}
    fired = {name: 0 for name, _, _ in CRASH_POINTS}
    armed = dict(fired)
    crashes = 0
    with stack.producer() as producer:
        for cycle in range(CYCLES):
            producer.publish_many(chunks[cycle])
            for e in chunks[cycle]:
                published[e["profile"]] += 1
            name, rules, seconds = CRASH_POINTS[cycle % len(CRASH_POINTS)]
            set_faults(faults, rules if isinstance(rules, dict) else {})
            armed[name] += 1
            warm = ("worker.warm_trainers=true",) if name in AT_A_COMMIT else ()
            worker = stack.start_worker(f"w{cycle}", settings=warm)
            if isinstance(rules, dict):
                fired[name] += _wait_exit_or_kill(stack, worker, seconds) == "died"
            elif rules == "consolidating":
                fired[name] += _wait_exit_or_kill(stack, worker, seconds, log_marker="consolidating") == "marker"
            else:
                time.sleep(2 + rng.random() * seconds)
                kill_group(worker)
                fired[name] += 1
            crashes += 1
            versions = check_state_dir(stack.state, PROFILES, published, versions, after_crash=True)

    set_faults(faults, {})
    worker = stack.start_worker(f"w{CYCLES}")  # same static member id as the crashed ones
    total = sum(published.values())
    stack.wait_for(lambda: sum(stack.learner_state(p).get("events_seen", 0) for p in PROFILES) == total, 240,
                   "every event counted after the crashes")

    def every_profile_has_a_version() -> bool:
        paths = [stack.state / p / "registry.json" for p in PROFILES]
        return all(p.exists() and json.loads(p.read_text())["current_version"] for p in paths)

    stack.wait_for(every_profile_has_a_version, 240, "a version for every profile")
    time.sleep(3)  # a redelivery would be counted now
    stack.stop_all()
    assert worker.returncode == 0
    versions = check_state_dir(stack.state, PROFILES, published, versions)
    summary = {"crashes": crashes, "fired": fired, "published": published, "versions": versions}
    for profile in PROFILES:
        state = stack.learner_state(profile)
        assert state["events_seen"] == published[profile], summary
        assert state["duplicates"] == 0, f"{profile}: redelivered events reached the dedupe window: {summary}"
        registry = ModelRegistry.open(stack.state, profile, "", writer=False)
        assert registry.current_version is not None, f"{profile} never got a version: {summary}"
    assert crashes >= 20
    missed = [name for name, n in fired.items() if n < armed[name]]
    assert not missed, f"failpoints armed and not reached: {missed} ({summary})"
    print("crash summary:", json.dumps(summary))
