"""Bad input, crashes and a lost worker, against the real broker and real worker processes."""

from __future__ import annotations

import os
import random
import re
import signal
import time
from collections import Counter

import msgpack
import pytest

from learner.store.registry import ModelRegistry
from memstream.samples.stream import make_sample_stream
from streams.broker import free_port
from contracts.codec import EventCodec


def malformed_messages(n: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``n`` bad messages of five families, with the family each belongs to."""
    rng = random.Random(seed)
    good = {"v": 1, "profile": "eve", "ts": 1.0, "kind": "note", "text": "a perfectly fine memory"}
    makers = {
        "garbage": lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + b"\xc1",
        "wrong types": lambda: msgpack.packb({**good, "ts": "yesterday", "text": rng.random()}),
        "oversize": lambda: msgpack.packb({**good, "text": "x" * 70_000}),
        "invalid utf-8": lambda: b"\x85\xa1v\x01\xa7profile\xa3eve\xa2ts\x01\xa4kind\xa4note\xa4text\xa3\xff\xfe\xfd",
        "unknown version": lambda: msgpack.packb({**good, "v": 99, "text": f"from the future {rng.random()}"}),
    }
    families = list(makers)
    return [(family := families[i % len(families)], makers[family]()) for i in range(n)]


def test_malformed_messages_go_to_dead_letters_and_good_ones_are_learned(stack):
    good = make_sample_stream(n_per_phase=(300,), seed=5, profile="eve")
    bad = malformed_messages(1000)
    codec = EventCodec()
    metrics_port = free_port()
    stack.overrides += [f"worker.metrics_port={metrics_port}"]
    worker = stack.start_worker()
    producer = stack.raw_producer()
    rng = random.Random(1)
    mixed = [("good", codec.encode_memory(e)) for e in good] + bad
    rng.shuffle(mixed)
    for _family, value in mixed:
        producer.send(stack.config.kafka.topic_prefix + "memory-events", key=b"eve", value=value)
    producer.flush()
    with stack.subscriber("dead-letters") as sub:
        letters: list[dict] = []

        def all_letters():
            letters.extend(e for _k, e in sub.poll(1.0))
            return len(letters) >= len(bad)

        stack.wait_for(all_letters, 120, "1,000 dead letters")
    stack.wait_for(lambda: stack.learner_state("eve").get("events_seen") == len(good), 60, "every good event learned")
    assert worker.poll() is None, "the worker never restarted"
    assert len(letters) == len(bad)
    assert sorted(l["value"] for l in letters) == sorted(v for _f, v in bad)  # original bytes kept
    reasons = Counter(l["reason"].split(":")[0] for l in letters)
    assert all(l["reason"] and l["topic"].endswith("memory-events") and l["offset"] >= 0 for l in letters)
    assert reasons["invalid event"] >= 400  # wrong types and unknown versions say which field
    assert any("over the limit" in l["reason"] for l in letters)
    assert any("UTF-8" in l["reason"] for l in letters)
    assert any("unknown schema version" in l["reason"] for l in letters)

    def metrics() -> dict[str, float]:
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = out.get(name, 0.0) + float(value)
        return out

    stack.wait_for(lambda: metrics().get("memstream_events_in_total") == len(mixed), 30, "metrics to catch up")
    m = metrics()
    assert m["memstream_events_learned_total"] == len(good)
    assert sum(v for k, v in m.items() if k.startswith("memstream_dead_letters_total")) == len(bad)
    assert m['memstream_reservoir_size{profile="eve"}'] > 0


def _wait_log(stack, proc, text: str, timeout: float) -> None:
    stack.wait_for(lambda: text in proc.log_path.read_text(errors="replace"), timeout, repr(text), interval=0.1)


def test_kill_9_mid_stream_and_mid_consolidation_counts_every_event_once(stack):
    events = make_sample_stream(n_per_phase=(250, 250), seed=6, profile="fay")
    with stack.producer() as producer:
        producer.publish_many(events[:250])
        worker = stack.start_worker("w1")
        # 1: killed while a consolidation computes (its run process dies with nothing written)
        _wait_log(stack, worker, "consolidating", 120)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        # 2: restarted, killed again in the middle of the stream
        producer.publish_many(events[250:])
        worker = stack.start_worker("w2")
        stack.wait_for(lambda: stack.learner_state("fay").get("events_seen", 0) > 260, 120, "ingest resumed",
                       interval=0.05)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    worker = stack.start_worker("w3")
    stack.wait_for(lambda: stack.learner_state("fay").get("events_seen") == len(events), 180, "all events counted")
    time.sleep(3)  # anything redelivered late would be counted now
    state = stack.learner_state("fay")
    assert state["events_seen"] == len(events), "every event id counted exactly once"
    cursors = [v for k, v in state["sources"].items()
               if k.startswith(f"kafka:{stack.prefix}memory-events") and k.endswith(f":{_partition(stack, 'fay')}")]
    assert cursors == [len(events)]
    registry = ModelRegistry.open(stack.state, "fay", "", writer=False)
    for version in registry.kept_versions():
        registry.verify(version)
    versions_dir = stack.state / "fay" / "versions"
    leftovers = [p.name for p in versions_dir.iterdir() if not p.name.startswith("v")] if versions_dir.exists() else []
    assert not leftovers, f"partial version directories: {leftovers}"


def _partition(stack, profile: str) -> int:
    from kafka.partitioner.default import murmur2

    return (murmur2(profile.encode()) & 0x7FFFFFFF) % stack.config.kafka.partitions


def test_sigterm_abandons_the_run_saves_state_and_leaves(stack):
    events = make_sample_stream(n_per_phase=(200,), seed=7, profile="gus")
    stack.overrides += ["train.foundation_epochs=400"]  # a run that cannot finish before the signal
    with stack.producer() as producer:
        producer.publish_many(events)
    worker = stack.start_worker()
    _wait_log(stack, worker, "consolidating", 120)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    log = worker.log_path.read_text(errors="replace")
    assert "runs in progress abandoned, state saved" in log
    assert "\x1b[" not in log, "a worker's log is plain text: no terminal control codes"
    learned = re.search(r"worker stopped: .*'learned': (\d+)", log)  # its reading goes on until the signal
    assert learned, log
    assert stack.learner_state("gus")["events_seen"] == int(learned[1]) > 0  # all it learned, saved
    registry = ModelRegistry.open(stack.state, "gus", "", writer=False)
    assert registry.current_version is None  # no partial version
    assert not (stack.state / "gus" / "versions").exists() or not any((stack.state / "gus" / "versions").iterdir())


@pytest.mark.brokers("kafka")  # noida-db 0.2.3 never completes a rebalance of a two-member group (docs/streaming.md)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_two_workers_one_stopped_the_other_finishes_its_profiles(stack, how):
    profiles = ["hal", "ivy", "jon", "kit", "lou", "max"]
    events = []
    for i, profile in enumerate(profiles):
        events += make_sample_stream(n_per_phase=(40,), seed=20 + i, profile=profile)
    stack.overrides += ["scheduler.count=100000"]  # this test is about ownership, not training
    a = stack.start_worker("a")
    b = stack.start_worker("b")
    with stack.producer() as producer:
        producer.publish_many(events[: len(events) // 2])
        stack.wait_for(lambda: sum(stack.learner_state(p).get("events_seen", 0) for p in profiles) > 0, 90,
                       "ingest started")
        time.sleep(2)
        if how == "sigkill":
            os.killpg(a.pid, signal.SIGKILL)
        else:
            a.send_signal(signal.SIGTERM)
        a.wait(60)
        producer.publish_many(events[len(events) // 2:])
    per_profile = Counter(e["profile"] for e in events)
    stack.wait_for(lambda: all(stack.learner_state(p).get("events_seen") == per_profile[p] for p in profiles), 120,
                   "the surviving worker finishing every profile")
    time.sleep(2)
    assert all(stack.learner_state(p)["events_seen"] == per_profile[p] for p in profiles)
    assert b.poll() is None


def _group_members(stack) -> list[str]:
    """The static ids of the members the broker lists in the stack's consumer group."""
    from streams.topics import admin_client

    admin = admin_client(stack.config.kafka)
    try:
        group = admin.describe_groups([stack.config.worker.group])[stack.config.worker.group]
    finally:
        admin.close()
    return sorted(member.get("group_instance_id") or member["member_id"] for member in group["members"])


@pytest.mark.parametrize("leave", [True, False])
def test_a_stopped_static_member_leaves_its_group_at_once_unless_set_to_keep_its_place(stack, leave):
    stack.overrides += ["worker.session_timeout_s=60"]  # a member that keeps its place stays listed this long
    worker = stack.start_worker("a", settings=(f"worker.leave_group_on_stop={str(leave).lower()}",))
    _wait_log(stack, worker, "rebalance: given", 90)
    assert _group_members(stack) == [f"{stack.prefix}a"]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    log = worker.log_path.read_text(errors="replace")
    assert ("its partitions move at once" in log) == leave, log[-3000:]
    assert _group_members(stack) == ([] if leave else [f"{stack.prefix}a"])
    said = re.findall(r"^(\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] )?(rebalance: given|left group)", log, re.M)
    assert [what for _, what in said] == ["rebalance: given"] + ["left group"] * leave, log[-3000:]
    assert all(stamp for stamp, _ in said), log[-3000:]  # the log says when it was given its share and when it left
