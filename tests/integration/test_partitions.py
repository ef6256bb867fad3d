"""A topic's partitions against the group's workers: more workers than partitions, and partitions
added to the topic while a worker reads it.

Both need a real group protocol (an idle member, a rebalance onto new partitions): Apache Kafka only
(see ``tests/integration/conftest.py``)."""

from __future__ import annotations

import re
import signal
from collections import Counter

import pytest

from contracts.topics import Topics
from memstream.samples.stream import make_sample_stream
from tests.integration.conftest import Stack

pytestmark = [pytest.mark.slow, pytest.mark.brokers("kafka")]

ASSIGNMENT = re.compile(r"rebalance: given (partitions [\d, ]+|no partition) of ")


def _stream(profiles: list[str], per_profile: int, seed: int) -> list[dict]:
    streams = [make_sample_stream(n_per_phase=(per_profile,), seed=seed + i, profile=p) for i, p in enumerate(profiles)]
    return [e for group in zip(*streams) for e in group]  # interleaved, each profile's order kept


def _last_assignment(worker) -> str | None:
    found = ASSIGNMENT.findall(worker.log_path.read_text(errors="replace"))
    return found[-1] if found else None


def _grow_topic(stack: Stack, partitions: int) -> None:
    """Add partitions to the memory-events topic (as `kafka-topics.sh --alter --partitions` does)."""
    from kafka.admin import NewPartitions

    from streams.topics import admin_client

    admin = admin_client(stack.config.kafka)
    try:
        admin.create_partitions({Topics(stack.prefix).memory_events: NewPartitions(total_count=partitions)})
    finally:
        admin.close()


def _all_counted(stack: Stack, events: list[dict]) -> bool:
    per_profile = Counter(e["profile"] for e in events)
    return all(stack.learner_state(p).get("events_seen") == n for p, n in per_profile.items())


def test_a_worker_beyond_the_topics_partitions_says_it_idles_and_takes_over_when_the_owner_stops(bootstrap, tmp_path):
    stack = Stack(bootstrap, tmp_path, extra=["kafka.partitions=1", "scheduler.count=100000"])
    profiles = ["ada", "bea", "cy"]
    events = _stream(profiles, 30, seed=40)
    try:
        workers = {name: stack.start_worker(name) for name in ("a", "b")}
        stack.wait_for(lambda: sorted(map(str, map(_last_assignment, workers.values())))
                       == ["no partition", "partitions 0"], 120, "one worker given the partition, the other none")
        owner = next(n for n, w in workers.items() if _last_assignment(w) == "partitions 0")
        idle = next(n for n in workers if n != owner)
        assert "this worker idles until a rebalance gives it one" in workers[idle].log_path.read_text()
        with stack.producer() as producer:
            producer.publish_many(events[: len(events) // 2])
            stack.wait_for(lambda: _all_counted(stack, events[: len(events) // 2]), 120, "the owner's share")
            workers[owner].send_signal(signal.SIGTERM)
            assert workers[owner].wait(60) == 0
            producer.publish_many(events[len(events) // 2:])
        stack.wait_for(lambda: _all_counted(stack, events), 120, "the idle worker taking over every profile")
        assert _last_assignment(workers[idle]) == "partitions 0"
    finally:
        stack.stop_all()
    for profile in profiles:
        assert stack.learner_state(profile)["duplicates"] == 0


def test_partitions_added_to_the_topic_are_adopted_and_nothing_published_to_them_is_skipped(bootstrap, tmp_path):
    stack = Stack(bootstrap, tmp_path, extra=["kafka.partitions=1", "kafka.metadata_max_age_s=2",
                                              "scheduler.count=100000"])
    profiles = [f"q{i}" for i in range(12)]
    events = _stream(profiles, 20, seed=60)
    before, after = events[: len(events) // 2], events[len(events) // 2:]
    try:
        worker = stack.start_worker("a")
        with stack.producer() as producer:
            producer.publish_many(before)
        stack.wait_for(lambda: _all_counted(stack, before), 120, "the events of the one partition")
        _grow_topic(stack, 4)
        with stack.producer() as producer:  # a new producer knows the four partitions from its start
            producer.publish_many(after)
        stack.wait_for(lambda: _all_counted(stack, events), 120, "the events published to the new partitions")
        assert _last_assignment(worker) == "partitions 0, 1, 2, 3"
    finally:
        stack.stop_all()
    fed_from = Counter(len(stack.learner_state(p)["sources"]) for p in profiles)
    assert sum(n for count, n in fed_from.items() if count > 1) >= 6, f"few profiles moved partitions: {fed_from}"
    for profile in profiles:
        assert stack.learner_state(profile)["duplicates"] == 0


def test_profiles_whose_events_span_old_and_new_partitions_are_finished_by_two_workers(bootstrap, tmp_path):
    """Events published before and after the topic grew wait for the workers: a profile's first events lie
    in its old partition, the rest in its new one, and the two may belong to different workers."""
    stack = Stack(bootstrap, tmp_path, extra=["kafka.partitions=2", "kafka.metadata_max_age_s=2",
                                              "scheduler.count=100000", "worker.profile_idle_s=2"])
    profiles = [f"r{i}" for i in range(12)]
    events = _stream(profiles, 20, seed=80)
    before, after = events[: len(events) // 2], events[len(events) // 2:]
    with stack.producer() as producer:
        producer.publish_many(before)
    _grow_topic(stack, 4)
    with stack.producer() as producer:
        producer.publish_many(after)
    try:
        workers = [stack.start_worker(name) for name in ("a", "b")]
        stack.wait_for(lambda: _all_counted(stack, events), 120, "every profile finished")
    finally:
        stack.stop_all()
    for profile in profiles:
        assert stack.learner_state(profile)["duplicates"] == 0
    assert sum(len(stack.learner_state(p)["sources"]) > 1 for p in profiles) >= 4  # 5 of these 12 keys move
