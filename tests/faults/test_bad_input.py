"""Bad input at scale: 100,000 random byte strings through the real worker, and property-based fuzzing of
every input file format the CLI reads (memory-event JSONL, TOML config)."""

from __future__ import annotations

import json
import os
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learner.config import ConfigError, load_config
from contracts.events import read_jsonl
from memstream.samples.stream import make_sample_stream
from contracts.codec import EventCodec
from tests.faults.helpers import rss_mb

N_RANDOM = int(os.environ.get("MEMSTREAM_FAULT_RANDOM_MESSAGES", "100000"))


def _count_dead_letters(stack, want: int, timeout: float) -> tuple[int, set[str]]:
    """Read the dead-letter topic with a plain consumer (values only; 100k events is a lot of maps)."""
    from kafka import KafkaConsumer

    from contracts.topics import Topics

    consumer = KafkaConsumer(Topics(stack.config.kafka.topic_prefix).dead_letters,
                             **stack.config.kafka.kafka_python_options(), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    codec = EventCodec(max_event_bytes=1 << 20)
    count, reasons = 0, set()
    deadline = time.monotonic() + timeout
    try:
        while count < want and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                for record in batch:
                    letter = codec.decode_map(record.value)
                    assert letter["reason"], "a dead letter without a reason"
                    reasons.add(letter["reason"].split(":")[0])
                    count += 1
    finally:
        consumer.close()
    return count, reasons


@pytest.mark.slow
def test_100k_random_byte_strings_all_become_dead_letters_and_memory_stays_bounded(stack):
    rng = random.Random(11)
    good = make_sample_stream(n_per_phase=(60,), seed=12, profile="ray")
    worker = stack.start_worker()
    producer = stack.raw_producer()
    topic = stack.config.kafka.topic_prefix + "memory-events"
    codec = EventCodec()
    for e in good[:30]:
        producer.send(topic, key=b"ray", value=codec.encode_memory(e))
    producer.flush()
    stack.wait_for(lambda: stack.learner_state("ray").get("events_seen") == 30, 60, "the worker up and learning")
    rss_start = rss_mb(worker.pid)
    samples = []
    for i in range(N_RANDOM):
        value = rng.randbytes(rng.randrange(0, 200))
        producer.send(topic, key=rng.choice([b"ray", b"", None, os.urandom(8)]), value=value)
        if i % 10_000 == 0:
            samples.append(rss_mb(worker.pid))
    for e in good[30:]:  # good events behind the flood still get through: nothing stalled
        producer.send(topic, key=b"ray", value=codec.encode_memory(e))
    producer.flush()
    stack.wait_for(lambda: stack.learner_state("ray").get("events_seen") == len(good), 600,
                   "the good events behind 100k bad ones")
    samples.append(rss_mb(worker.pid))
    count, reasons = _count_dead_letters(stack, N_RANDOM, 300)
    assert worker.poll() is None, "the worker crashed"
    assert count == N_RANDOM, f"{count} dead letters for {N_RANDOM} bad messages"
    growth = max(samples) - rss_start
    print(f"random messages {N_RANDOM}, dead letters {count}, reasons {sorted(reasons)}, "
          f"worker RSS start {rss_start:.0f} MB, max {max(samples):.0f} MB")
    assert growth < 150, f"worker RSS grew {growth:.0f} MB over the flood (samples {samples})"


# -- file formats the CLI reads ------------------------------------------------------------
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
event_like = st.fixed_dictionaries({}, optional={
    "v": st.sampled_from([1, 2, "1", None]), "profile": st.sampled_from(["ok", "../x", "", "a" * 70, 3]),
    "ts": json_scalars, "kind": json_scalars, "text": json_scalars, "prompt": json_scalars,
    "response": json_scalars, "meta": json_values, "id": json_scalars})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.binary(max_size=80), event_like.map(lambda d: json.dumps(d).encode())),
                      max_size=8))
def test_event_files_of_any_bytes_give_events_or_line_errors(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("jsonl") / "events.jsonl"
    path.write_bytes(b"\n".join(lines))
    seen = []
    for line_no, event, error in read_jsonl(path):
        assert (event is None) != (error is None), "each line is an event or an error, never both or neither"
        if error is not None:
            assert isinstance(error, str) and error and "\n" not in error and "Traceback" not in error
        seen.append(line_no)
    # 0-based numbers of real lines of the file (the CLI prints them 1-based), in order, each once
    assert seen == sorted(set(seen)) and all(0 <= n < len(path.read_bytes().split(b"\n")) for n in seen)


toml_texts = st.one_of(
    st.text(max_size=120),
    st.lists(st.tuples(st.sampled_from(["train", "model", "ewc", "drift", "replay", "bogus", "kafka", "worker"]),
                       st.sampled_from(["lr", "epochs", "lam", "window", "capacity", "x", "bootstrap", "d_model"]),
                       st.sampled_from(["1", "-3", "0.5", '"text"', "true", "[1, 2]", "1e400", "nan", "{a=1}"])),
             max_size=5).map(lambda rows: "\n".join(f"[{s}]\n{k} = {v}" for s, k, v in rows)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=toml_texts)
def test_config_files_of_any_text_load_or_fail_with_one_clear_line(tmp_path_factory, text):
    from streams.settings import StreamConfig

    path = tmp_path_factory.mktemp("cfg") / "memstream.toml"
    path.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        load_config(path, environ={}, root=StreamConfig)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip() and "Traceback" not in message
