"""Three workers of one consumer group share 30 profiles over 6 partitions while three of them are killed
with SIGKILL (two mid-consolidation, one mid-stream), two are stopped with SIGTERM and three new ones
join. At the end every event is counted once, every version verifies, every profile had one writer at a
time (its lease journal and the lease each version names say so), and every accepted version's
model-updated event arrived, never in two versions.

Rebalances between live members and the expiry of a killed one need a real Kafka: this test runs on
Apache Kafka only (see ``tests/integration/conftest.py``)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter

import pytest

from learner.store.lock import read_leases
from learner.store.registry import ModelRegistry
from memstream.samples.stream import make_sample_stream
from tests.faults.helpers import check_state_dir, kill_group
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.brokers("kafka")]

PROFILES = [f"p{i:02d}" for i in range(30)]
STOP_WITHIN_S = 60  # a worker told to stop (SIGTERM) leaves within this, its state saved
REBALANCE_LINE = re.compile(r"rebalance: assigned ([\d.]+) s after the revocation, first event applied ([\d.]+) s")


def _counted(stack: Stack) -> int:
    return sum(stack.learner_state(p).get("events_seen", 0) for p in PROFILES)


def _catch_up(stack: Stack, published: int, what: str) -> float:
    """Seconds until every published event is counted (the consumer lag back to zero)."""
    started = time.monotonic()
    try:
        stack.wait_for(lambda: _counted(stack) == published, 240, what, interval=0.2)
    except AssertionError as exc:
        counts = {p: (s.get("events_seen"), s.get("sources")) for p in PROFILES for s in [stack.learner_state(p)]}
        raise AssertionError(f"{published - _counted(stack)} events never counted; per profile: {counts}") from exc
    return time.monotonic() - started


def _check_one_writer_at_a_time(stack: Stack, profile: str, killed: dict[int, float]) -> int:
    """Each lease begins after the one before it was given back, or after its process was killed; each
    version names a lease that was held when it was committed. Returns the number of leases."""
    journal = read_leases(stack.state / profile)
    leases = [e for e in journal if "acquired" in e]
    released = {e["lease"]: e["released"] for e in journal if "released" in e}
    ends = {}
    for before, after in zip(leases, leases[1:]):
        end = released.get(before["lease"], killed.get(before["pid"]))
        assert end is not None and end <= after["acquired"], \
            f"{profile}: lease {after} began while {before} was still held (journal: {journal})"
        assert after["previous_pid"] == before["pid"], f"{profile}: {after} did not take over from {before}"
    for lease in leases:
        ends[lease["lease"]] = (lease["acquired"], released.get(lease["lease"], killed.get(lease["pid"], 1e18)))
    registry = ModelRegistry.open(stack.state, profile, "", writer=False)
    for entry in registry.history:
        writer = entry.get("writer") or {}
        assert writer.get("lease") in ends, f"{profile}: version entry {entry} names no lease of the journal"
        start, end = ends[writer["lease"]]
        assert start <= entry["timestamp"] <= end, f"{profile}: {entry} written outside its lease {start}..{end}"
    return len(leases)


class Disruptions:
    """The workers of the scenario, what was done to them and how long the group took to recover."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.workers: dict[str, object] = {}
        self.killed: dict[int, float] = {}  # pid -> when it was killed
        self.published = 0
        self.recoveries: list[dict] = []
        self._log_marks: dict[str, int] = {}

    def start(self, name: str) -> None:
        self.workers[name] = self.stack.start_worker(name)

    def alive(self) -> list[str]:
        return [n for n, w in self.workers.items() if w.poll() is None]

    def mark_logs(self) -> None:
        self._log_marks = {n: w.log_path.stat().st_size if w.log_path.exists() else 0
                           for n, w in self.workers.items()}

    def consolidating_since_mark(self) -> str | None:
        for name in self.alive():
            with open(self.workers[name].log_path, "rb") as log:
                log.seek(self._log_marks.get(name, 0))
                if b"consolidating" in log.read():
                    return name
        return None

    def dump_stacks(self, names: list[str] | None = None) -> None:
        """The workers named (every live one by default) write their asyncio tasks' stacks (SIGUSR1) and their
        threads' (SIGQUIT) into their logs."""
        for name in self.alive() if names is None else names:
            self.workers[name].send_signal(signal.SIGUSR1)
            self.workers[name].send_signal(signal.SIGQUIT)
        time.sleep(3)

    def kill(self, name: str, how: str) -> None:
        """SIGKILL to the worker's whole process group (its trainer too), or SIGTERM; then time how long
        until every published event is counted."""
        worker = self.workers[name]
        lag = self.published - _counted(self.stack)
        started = time.monotonic()
        if how == "sigkill":
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            self.killed[worker.pid] = time.time()
            self.recoveries.append({"worker": name, "how": how, "lag": lag, "started": started})
            return
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:  # where it is stuck: its tasks' and threads' stacks into its log
            code = None
            self.dump_stacks([name])
            kill_group(worker)
        log_tail = worker.log_path.read_text(errors="replace")[-12000:]
        assert code == 0, f"{name} did not stop cleanly on SIGTERM (exit {code}):\n{log_tail}"
        self.recoveries.append({"worker": name, "how": how, "lag": lag, "started": started,
                                "stopped_in_s": round(time.monotonic() - started, 1)})

    def publish(self, producer, events: list[dict]) -> None:
        producer.publish_many(events)
        self.published += len(events)

    def kill_mid_consolidation(self, producer, events: list[dict], what: str) -> None:
        """Publish ``events``, kill -9 the first worker seen consolidating after that, and time the recovery."""
        self.mark_logs()
        self.publish(producer, events)
        try:
            victim = self.stack.wait_for(self.consolidating_since_mark, 180, f"a consolidation ({what})",
                                         interval=0.1)
        except AssertionError:
            self.dump_stacks()
            counted = _counted(self.stack)
            raise AssertionError(f"no run started ({what}); {counted} of {self.published} events counted; "
                                 f"workers' logs with their tasks' and threads' stacks:\n" + "\n".join(
                                     f"--- {n}\n{w.log_path.read_text(errors='replace')[-20000:]}"
                                     for n, w in self.workers.items())) from None
        self.kill(victim, "sigkill")
        self.catch_up(what)

    def catch_up(self, what: str) -> None:
        """Every published event counted; the time since the last disruption is its recovery time."""
        _catch_up(self.stack, self.published, what)
        last = self.recoveries[-1]
        last["recovered_s"] = round(time.monotonic() - last.pop("started"), 1)


def test_three_workers_three_kill9s_two_sigterms_lose_nothing_and_never_share_a_writer(bootstrap, tmp_path):
    stack = Stack(bootstrap, tmp_path,
                  extra=["kafka.partitions=6", "train.foundation_min_events=15", "scheduler.count=25"])
    per_profile_events = 75
    streams = [make_sample_stream(n_per_phase=(per_profile_events,), seed=100 + i, profile=p)
               for i, p in enumerate(PROFILES)]

    def slice_of(start: int, stop: int) -> list[dict]:  # events start..stop of every profile, interleaved
        return [e for group in zip(*(s[start:stop] for s in streams)) for e in group]

    events = slice_of(0, per_profile_events)
    run = Disruptions(stack)
    report: dict = {}
    try:
        for name in ("a", "b", "c"):
            run.start(name)
        with stack.subscriber("model-updated") as updates, stack.producer() as producer:
            # 1. kill -9 the first worker seen consolidating (runs are due at 25 events a profile)
            run.kill_mid_consolidation(producer, slice_of(0, 30), "kill -9 mid-consolidation")
            run.start("d")
            # 2. kill -9 a worker while the stream comes in
            run.publish(producer, slice_of(30, 40))
            run.kill(run.alive()[0], "sigkill")
            run.catch_up("kill -9 mid-stream")
            run.start("e")
            stack.wait_for(lambda: "rebalance: given" in run.workers["e"].log_path.read_text(errors="replace"),
                           120, "the new member's first assignment")
            # 3. SIGTERM while the stream comes in
            run.publish(producer, slice_of(40, 50))
            run.kill(run.alive()[0], "sigterm")
            run.catch_up("SIGTERM")
            # 4. kill -9 mid-consolidation again (runs are due at 50 events a profile)
            run.kill_mid_consolidation(producer, slice_of(50, 65), "second kill -9 mid-consolidation")
            run.start("f")
            # 5. SIGTERM again, then the rest of the stream
            run.publish(producer, slice_of(65, per_profile_events))
            run.kill(run.alive()[0], "sigterm")
            run.catch_up("second SIGTERM")
            assert run.alive(), "no worker left"

            def every_profile_has_a_version() -> bool:
                paths = [stack.state / p / "registry.json" for p in PROFILES]
                return all(p.exists() and json.loads(p.read_text())["current_version"] for p in paths)

            stack.wait_for(every_profile_has_a_version, 300, "a version for every profile")
            accepted = {(p, e["version"]) for p in PROFILES
                        for e in ModelRegistry.open(stack.state, p, "", writer=False).history
                        if e.get("status") == "accepted"}
            seen: dict[str, list[dict]] = {}

            def every_version_announced() -> bool:
                for _key, event in updates.poll(1.0):
                    seen.setdefault(event["id"], []).append(event)
                announced = {(e["profile"], e["version"]) for copies in seen.values() for e in copies
                             if e.get("accepted")}
                return accepted <= announced

            stack.wait_for(every_version_announced, 120, "a model-updated event for every accepted version")
        time.sleep(3)  # a redelivery would be counted now
        stack.stop_all()
    finally:
        stack.stop_all()

    workers, killed = run.workers, run.killed
    assert sum(r["how"] == "sigkill" for r in run.recoveries) == 3 and sum(r["how"] == "sigterm"
                                                                         for r in run.recoveries) == 2
    report["disruptions"] = run.recoveries
    per_profile = Counter(e["profile"] for e in events)
    for profile in PROFILES:
        state = stack.learner_state(profile)
        assert state["events_seen"] == per_profile[profile], f"{profile}: {state['events_seen']} counted"
        assert state["duplicates"] == 0, f"{profile}: redelivered events reached the dedupe window"
    check_state_dir(stack.state, PROFILES, per_profile, {}, after_crash=True)
    leases = {p: _check_one_writer_at_a_time(stack, p, killed) for p in PROFILES}
    assert sum(n > 1 for n in leases.values()) >= 5, f"few profiles changed hands: {leases}"
    differing = {i: copies for i, copies in seen.items() if any(c != copies[0] for c in copies)}
    assert not differing, f"model-updated events published twice with different content: {differing}"
    spans = [tuple(map(float, m)) for w in workers.values()
             for m in REBALANCE_LINE.findall(w.log_path.read_text(errors="replace"))]
    assert spans, "no rebalance was timed"
    report["rebalances"] = len(spans)
    report["to_assignment_s_max"] = max(s[0] for s in spans)
    report["to_first_event_s_max"] = max(s[1] for s in spans)
    report["profiles_changing_hands"] = sum(n > 1 for n in leases.values())
    report["model_updated_copies"] = sum(len(c) for c in seen.values()) - len(seen)
    print("scale-out:", json.dumps(report))
