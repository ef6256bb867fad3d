"""The stream commands, run as a user runs them: good paths against the broker, bad input as one line."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

from memstream.samples.stream import make_sample_stream
from tests.conftest import memstream, write_jsonl


def one_clear_line(result) -> str:
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert result.returncode != 0
    assert lines and lines[-1].startswith("memstream: error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[-1]


def test_unreachable_broker_is_one_line_naming_the_address(tmp_path):
    events = write_jsonl(tmp_path / "e.jsonl", make_sample_stream(n_per_phase=(3,), seed=1))
    started = time.monotonic()
    for args in (["publish", str(events)], ["watch", "--max", "1"], ["worker", "--state", str(tmp_path / "s")]):
        line = one_clear_line(memstream(*args, "--bootstrap", "127.0.0.1:1", "--set", "kafka.request_timeout_s=2",
                                        check=False, timeout=120))
        assert "127.0.0.1:1" in line and "within 2 s" in line and "nothing listens there" in line
    assert time.monotonic() - started < 90  # a timeout, not a hang


def test_a_server_that_is_not_kafka_at_the_bootstrap_address_is_one_line_saying_so(tmp_path):
    events = write_jsonl(tmp_path / "e.jsonl", make_sample_stream(n_per_phase=(3,), seed=1))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{web.server_address[1]}"
    try:
        for args in (["publish", str(events)], ["worker", "--state", str(tmp_path / "s")]):
            line = one_clear_line(memstream(*args, "--bootstrap", address, "--set", "kafka.request_timeout_s=2",
                                            check=False, timeout=120))
            assert f"{address} accepts connections but gave no Kafka answer" in line, line
    finally:
        web.shutdown()
        web.server_close()


def test_bad_bootstrap_missing_file_unwritable_state(tmp_path):
    assert "HOST:PORT" in one_clear_line(memstream("publish", "x.jsonl", "--bootstrap", "nohost", check=False))
    assert "no such file" in one_clear_line(memstream("publish", str(tmp_path / "none.jsonl"), check=False))
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = one_clear_line(memstream("worker", "--state", str(blocker / "state"), "--bootstrap", "127.0.0.1:1",
                                    check=False))
    assert "not writable" in line


def test_apache_kafka_without_its_jars_or_on_a_taken_port_is_one_line(tmp_path):
    from streams.broker import free_port

    missing = memstream("broker", "--engine", "kafka", "--data", str(tmp_path / "k"), "--port", str(free_port()),
                        env={"MEMSTREAM_APACHE_KAFKA_LIBS": str(tmp_path / "no-jars")}, check=False)
    assert "./dev kafka-jars" in one_clear_line(missing) and str(tmp_path / "no-jars") in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_clear_line(memstream("up", "--engine", "kafka", "--state", str(tmp_path / "s"), "--port",
                                        str(port), check=False))
    assert f"port {port}" in line and "already in use" in line


def test_publish_file_and_watched_directory_once_each(stack, tmp_path):
    events = make_sample_stream(n_per_phase=(20,), seed=2, profile="pia")
    good = write_jsonl(tmp_path / "e.jsonl", events)
    bad = tmp_path / "mixed.jsonl"
    bad.write_text(json.dumps(events[0]) + "\n{not json\n" + json.dumps({"profile": "../etc", "text": "x"}) + "\n")
    args = [a for o in stack.overrides for a in ("--set", o)]
    summary = json.loads(memstream("publish", str(good), "--json", *args).stdout)
    assert summary == {"published": 20, "errors": 0}
    mixed = memstream("publish", str(bad), "--json", *args, check=False)
    assert mixed.returncode == 1 and json.loads(mixed.stdout) == {"published": 1, "errors": 2}
    assert "mixed.jsonl:2" in mixed.stderr and "mixed.jsonl:3" in mixed.stderr

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i, e in enumerate(events[:5]):
        (inbox / f"m{i}.json").write_text(json.dumps(e))
    (inbox / "copy.json").write_text(json.dumps(events[0]))
    first = json.loads(memstream("publish", "--watch", str(inbox), "--once", "--json", *args).stdout)
    assert first == {"published": 5, "errors": 0, "duplicates": 1}
    (inbox / "m9.json").write_text(json.dumps(events[9]))
    again = json.loads(memstream("publish", "--watch", str(inbox), "--once", "--json", *args).stdout)
    assert again == {"published": 1, "errors": 0, "duplicates": 0}  # a restart re-publishes nothing

    with _raw_count(stack) as count:
        assert count() == 20 + 1 + 5 + 1


class _raw_count:
    """Count the messages on the stack's memory-events topic (no group, from the beginning)."""

    def __init__(self, stack):
        self.stack = stack

    def __enter__(self):
        from kafka import KafkaConsumer, TopicPartition

        kafka = self.stack.config.kafka
        self.consumer = KafkaConsumer(**kafka.kafka_python_options())
        topic = f"{self.stack.prefix}memory-events"
        parts = [TopicPartition(topic, p) for p in self.consumer.partitions_for_topic(topic)]
        self.consumer.assign(parts)
        self.parts = parts
        return lambda: sum(self.consumer.end_offsets(parts).values())

    def __exit__(self, *exc):
        self.consumer.close()


def test_watch_prints_a_line_per_event_and_json_with_contract_fields(stack):
    stack.start_worker()
    args = [a for o in stack.overrides for a in ("--set", o)]
    producer = stack.raw_producer()
    producer.send(f"{stack.prefix}memory-events", key=b"q", value=b"\xc1not an event")
    producer.flush()
    text = memstream("watch", "dead-letters", "--from-beginning", "--max", "1", "--timeout", "60", *args, timeout=120)
    assert text.stdout.startswith("dead-letter ") and "not msgpack" in text.stdout
    raw = memstream("watch", "all", "--json", "--from-beginning", "--max", "1", "--timeout", "60", *args, timeout=120)
    record = json.loads(raw.stdout.splitlines()[0])
    assert record["event"] == "dead-letters" and record["topic"].endswith("memory-events")
    assert {"reason", "partition", "offset", "value", "key"} <= set(record)
    assert bytes.fromhex(record["value"]) == b"\xc1not an event"
