"""The stream worker's pure parts, with no broker and no event loop: codec, settings, ingest core."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from learner.config import ConfigError, load_config
from learner.training.plan import Plan
from contracts.events import MemoryEvent
from memstream.samples.stream import make_sample_stream
from contracts.codec import DecodeError, EventCodec
from streams.ingest import IngestCore
from streams.kafka_server import NODE_SETTINGS, compose_name
from streams.settings import StreamConfig
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


# -- codec ----------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_decoder_never_raises_anything_but_decode_error(data):
    codec = EventCodec(max_event_bytes=256, max_text_chars=64)
    try:
        event = codec.decode_memory(data)
    except DecodeError as exc:
        assert str(exc)  # a reason, always
    else:
        assert isinstance(event, MemoryEvent)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "id", "profile", "ts", "kind", "text", "prompt", "response", "meta"]),
                       st.one_of(st.integers(-2**63, 2**64 - 1), st.floats(), st.text(max_size=20), st.none(), st.booleans(),
                                 st.lists(st.integers(0, 9), max_size=3), st.binary(max_size=8)), max_size=9))
def test_decoder_validates_every_field_shape(fields):
    codec = EventCodec()
    try:
        event = codec.decode_memory(msgpack.packb(fields, use_bin_type=True))
    except DecodeError as exc:
        assert str(exc)
    else:
        assert event.v == 1 and event.profile == fields["profile"]


def test_round_trip_and_limits():
    codec = EventCodec(max_event_bytes=4096, max_text_chars=100)
    event = MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": 2.5, "kind": "conversation",
                                   "prompt": "what tea?", "response": "oolong", "meta": {"domain": "tea"}})
    assert codec.decode_memory(codec.encode_memory(event)) == event
    with pytest.raises(DecodeError, match="over the limit of 100"):
        codec.decode_memory(msgpack.packb({"v": 1, "profile": "p", "ts": 1, "kind": "k", "text": "x" * 101}))
    with pytest.raises(DecodeError, match="extension type"):
        codec.decode_memory(msgpack.packb({"v": 1, "profile": "p", "ts": 1, "kind": "k", "text": msgpack.ExtType(5, b"x")}))
    with pytest.raises(DecodeError, match="UTF-8"):
        codec.decode_memory(b"\x81\xa4text\xa2\xff\xfe")
    with pytest.raises(DecodeError, match="must be a msgpack map"):
        codec.decode_memory(msgpack.packb([1, 2]))
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode_memory(codec.encode_memory(event) + b"\x01")
    with pytest.raises(DecodeError, match="non-finite"):
        codec.decode_memory(msgpack.packb({"v": 1, "profile": "p", "ts": float("nan"), "kind": "k", "text": "t"}))


# -- settings -------------------------------------------------------------------------------
def test_secrets_never_printed_and_options_pass_through():
    cfg = load_config(overrides=["kafka.security_protocol=SASL_SSL", "kafka.sasl_mechanism=SCRAM-SHA-512",
                                 "kafka.sasl_username=me", "kafka.ssl_cafile=/etc/ca.pem"],
                      environ={"MEMSTREAM_KAFKA_SASL_PASSWORD": "s3cret-value"}, root=StreamConfig)
    assert "s3cret-value" not in cfg.to_json() and "s3cret-value" not in repr(cfg)
    assert "s3cret-value" not in json.dumps(cfg.learner_config().to_dict())
    options = cfg.kafka.kafka_python_options()
    assert options["sasl_plain_password"] == "s3cret-value" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["ssl_cafile"] == "/etc/ca.pem" and options["security_protocol"] == "SASL_SSL"
    with pytest.raises(ConfigError, match="needs kafka.sasl_username and kafka.sasl_password"):
        load_config(overrides=["kafka.security_protocol=SASL_PLAINTEXT"], environ={}, root=StreamConfig)
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load_config(overrides=["kafka.bootstrap=nohost"], environ={}, root=StreamConfig)


def test_plan_survives_json():
    events = [MemoryEvent.from_dict({"v": 1, **e}) for e in make_sample_stream(n_per_phase=(6,), seed=1)]
    plan = Plan(trigger="count", mode="lora", new=events[:3], replay=events[3:5], probe=events[5:],
                parent_version=2, seed=7)
    back = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert back == plan


# -- ingest core ----------------------------------------------------------------------------
@pytest.fixture
def core(tmp_path):
    cfg = load_config(overrides=TINY + ["scheduler.count=40", "train.foundation_min_events=20"], environ={},
                      root=StreamConfig)
    c = IngestCore(cfg, tmp_path, run_pool=None)
    yield c
    c.close()


def wire(events):
    codec = EventCodec()
    return [codec.encode_memory({"v": 1, **e}) for e in events]


def test_redelivered_offsets_and_republished_ids_are_counted_once(core, tmp_path):
    values = wire(make_sample_stream(n_per_phase=(30,), seed=2, profile="ann"))
    for offset, value in enumerate(values):
        core.handle("t", 0, offset, b"ann", value)
    core.flush()
    for offset, value in enumerate(values[:10]):  # a crash replays what was not committed
        core.handle("t", 0, offset, b"ann", value)
    for offset, value in enumerate(values[:5], start=30):  # the producer published the same memories again
        core.handle("t", 0, offset, b"ann", value)
    assert core.learners["ann"].events_seen == 30
    assert core.counts["redelivered"] == 10 and core.counts["duplicates"] == 5
    core.close()
    reopened = IngestCore(core.config, tmp_path)
    assert reopened.learner("ann").events_seen == 30
    assert reopened.learner("ann").sources["kafka:t:0"] == 35
    reopened.close()


def test_bad_messages_become_dead_letters_and_the_rest_flows(core):
    good = wire(make_sample_stream(n_per_phase=(5,), seed=3, profile="bo"))
    assert not core.handle("t", 1, 0, b"x", b"\xc1garbage").parked
    for i, value in enumerate(good, start=1):
        core.handle("t", 1, i, b"bo", value)
    assert core.learners["bo"].events_seen == 5 and core.counts["dead_letters"] == 1
    core.flush()
    (kind, key, letter, marker), = [m for m in core.outgoing().messages if m[0] == "dead-letters"]
    assert "not msgpack" in letter["reason"] and letter["value"] == b"\xc1garbage" and letter["offset"] == 0
    assert letter["id"] == "dead-letter/t/1/0"  # the message it stands for: a resent copy is recognisable
    core.sent([marker])
    assert core.dead_letters == []


def test_quality_gate_drops_acknowledgements(core):
    codec = EventCodec()
    for i, text in enumerate(["ok", "thanks!", "Repotted the fig into a bigger terracotta pot."]):
        core.handle("t", 0, i, b"cy", codec.encode_memory({"v": 1, "profile": "cy", "ts": i, "kind": "c", "text": text}))
    assert core.learners["cy"].events_seen == 1 and core.counts["quality_dropped"] == 2


def test_a_trigger_starts_one_run_and_its_model_updated_waits_in_the_outbox(core, tmp_path):
    for offset, value in enumerate(wire(make_sample_stream(n_per_phase=(60,), seed=4, profile="di"))):
        core.handle("t", 0, offset, b"di", value)
    assert core.due.get("di") in ("count", "drift")
    assert core.start_runs() == ["di"]
    assert core.finish_runs() == 1
    assert [m for m in core.outgoing().messages if m[0] == "model-updated"] == []  # not durable yet
    core.flush()
    (kind, key, event, marker), = [m for m in core.outgoing().messages if m[0] == "model-updated"]
    assert key == b"di" and event["accepted"] and event["version"] == 1 and event["id"].startswith("di/run/")
    assert event["sha256"] and (tmp_path / event["adapter_path"]).is_file()  # relative to the state directory
    assert not Path(event["adapter_path"]).is_absolute()
    core.sent([marker])
    assert [m for m in core.outgoing().messages if m[0] == "model-updated"] == []
    assert "di" in core.dirty  # marked sent: saved at the next flush


def test_a_run_the_gate_refused_is_due_again_at_once_in_the_worker(core):
    events = wire(make_sample_stream(n_per_phase=(40, 12), seed=6, profile="fa"))
    for offset, value in enumerate(events[:40]):
        core.handle("t", 0, offset, b"fa", value)
    assert core.start_runs() == ["fa"] and core.finish_runs() == 1  # the foundation
    learner = core.learners["fa"]
    learner.config = load_config(overrides=TINY + ["train.lr=3.0", "train.grad_clip=0", "train.gate_tolerance=0",
                                                   "train.gate_max_forgetting=0"], environ={})
    for offset, value in enumerate(events[40:], start=40):
        core.handle("t", 0, offset, b"fa", value)
    learner.scheduler.request("manual")
    core.due["fa"] = "manual"
    assert core.start_runs() == ["fa"] and core.finish_runs() == 1
    assert learner.registry.history[-1]["status"] in ("rejected", "aborted")
    assert core.due.get("fa") == "manual"  # 12 events, under scheduler.min_examples: due all the same
    assert core.start_runs() == ["fa"] and core.finish_runs() == 1
    assert [e["attempt"] for e in learner.registry.history[-2:]] == [1, 2]
    assert "fa" not in core.due and len(learner.recent) == 0


def test_a_profile_with_nothing_to_do_is_closed_and_its_lock_given_back(core, tmp_path):
    from learner.store.lock import read_leases

    idle_s = core.config.worker.profile_idle_s
    for offset, value in enumerate(wire(make_sample_stream(n_per_phase=(5,), seed=5, profile="ed"))):
        core.handle("t", 0, offset, b"ed", value)
    applied_at = core.last_applied["ed"]
    assert core.close_idle_profiles(now=applied_at + idle_s) == []  # not saved yet
    core.flush()
    assert core.close_idle_profiles(now=applied_at + idle_s / 2) == []  # not idle for long enough
    core.due["ed"] = "manual"
    assert core.close_idle_profiles(now=applied_at + idle_s) == []  # a run waits for it
    del core.due["ed"]
    assert not any("released" in entry for entry in read_leases(tmp_path / "ed"))
    assert core.close_idle_profiles(now=applied_at + idle_s) == ["ed"]
    assert "ed" not in core.learners and "ed" not in core.partition_of
    assert any("released" in entry for entry in read_leases(tmp_path / "ed"))  # the lock was given back
    assert core.learner("ed").events_seen == 5  # the state saved: it opens again with its next event


# -- deployment -----------------------------------------------------------------------------
def kafka_version() -> str:
    """The Apache Kafka version kafka/pom.xml pins."""
    import xml.etree.ElementTree as ET

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    return ET.parse(ROOT / "kafka" / "pom.xml").getroot().find("m:properties/m:kafka.version", ns).text


def test_docker_compose_has_what_the_code_expects():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "worker"} <= set(services)
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"  # the version the tests start
    node = {compose_name(k): v for k, v in NODE_SETTINGS.items()}  # the node's settings in the tests
    assert {k: kafka["environment"].get(k) for k in node} == node
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    worker = services["worker"]
    env = worker["environment"]
    cfg = load_config(environ={k: str(v) for k, v in env.items()}, root=StreamConfig)  # every variable is valid
    assert cfg.kafka.bootstrap == "kafka:9092" and cfg.worker.metrics_port == int(env["MEMSTREAM_WORKER_METRICS_PORT"])
    assert env["MEMSTREAM_KAFKA_BOOTSTRAP"].split(":")[0] in services
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert worker["command"][:1] == ["worker"] and "/state" in worker["command"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in worker["volumes"]}
    assert mounts["/state"] in compose["volumes"]
    assert any(m.endswith(":/var/lib/kafka/data") and m.split(":")[0] in compose["volumes"] for m in kafka["volumes"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile and 'ENTRYPOINT ["memstream"]' in dockerfile
    for package in ("learner", "streams", "producers", "consumers", "memstream"):
        assert f"COPY {package} " in dockerfile


# -- offsets in order, none missed ------------------------------------------------------------
def _read_partition(n: int, dropped: int | None, missing: int | None, queued: int, sought: int | None = None,
                    first_seek_lost: bool = False) -> list[int]:
    """What the worker applies of a partition of ``n`` records (``missing``: one that does not exist) when
    the client drops record ``dropped`` before it reaches the agent and ``queued`` later ones are already
    on their way; a seek reads the partition again from the offset asked for. ``sought``: reading starts
    there, at the committed offset the client was sought to (else at 0, taken as it comes). (A dropped
    record is noticed when the next one arrives; the last one of a partition waits, unacknowledged, for the
    next event or the next start.) ``first_seek_lost``: the first seek brings only what was already queued,
    and the timer's beat, 10 s on, asks again for what is overdue."""
    from collections import namedtuple

    from streams.gaps import APPLY, IGNORE, OffsetGapGuard

    now = [0.0]
    guard, applied, lost = OffsetGapGuard(clock=lambda: now[0]), [], first_seek_lost
    if sought is not None:
        tp = namedtuple("TP", "topic partition")
        guard.sought({tp("memory-events", 0): sought, tp("memory-events", 1): None})
    exists = [o for o in range(sought or 0, n) if o != missing]
    incoming = [o for o in exists if o != dropped]
    while incoming:
        offset = incoming.pop(0)
        verdict = guard.check("memory-events", 0, offset)
        if verdict == APPLY:
            applied.append(offset)
        elif verdict != IGNORE:
            incoming = incoming[:queued] + ([] if lost else [o for o in exists if o >= verdict[1]])
            lost = False
        if not incoming and first_seek_lost:
            now[0] += 10.0
            incoming = [o for _, _, target in guard.overdue(10.0) for o in exists if o >= target]
    return applied


@given(st.integers(3, 40), st.data())
@settings(max_examples=200, deadline=None)
def test_no_record_is_applied_past_one_the_client_dropped(n, data):
    dropped = data.draw(st.integers(1, n - 2))
    queued = data.draw(st.integers(0, 5))
    assert _read_partition(n, dropped, None, queued) == list(range(n))


@given(st.integers(3, 40), st.data())
@settings(max_examples=200, deadline=None)
def test_a_re_read_that_never_comes_is_asked_for_again_and_nothing_is_skipped(n, data):
    """The first seek is lost (only what was already queued arrives): the timer's beat asks again."""
    dropped = data.draw(st.integers(1, n - 2))
    queued = data.draw(st.integers(0, 5))
    assert _read_partition(n, dropped, None, queued, first_seek_lost=True) == list(range(n))


@given(st.integers(3, 40), st.data())
@settings(max_examples=200, deadline=None)
def test_no_record_is_applied_past_one_dropped_right_where_reading_restarts(n, data):
    sought = data.draw(st.integers(0, n - 2))
    queued = data.draw(st.integers(0, 5))
    assert _read_partition(n, sought, None, queued, sought=sought) == list(range(sought, n))


@given(st.integers(3, 40), st.data())
@settings(max_examples=200, deadline=None)
def test_a_record_that_does_not_exist_is_skipped_once_read_again(n, data):
    missing = data.draw(st.integers(1, n - 2))
    dropped = data.draw(st.one_of(st.none(), st.integers(1, n - 2).filter(lambda o: o != missing)))
    queued = data.draw(st.integers(0, 5))
    assert _read_partition(n, dropped, missing, queued) == [o for o in range(n) if o != missing]


def test_state_saves_and_version_commits_leave_the_event_loop_free(tmp_path, monkeypatch):
    """The worker's timer saves states and commits versions in a thread: while they work, the event loop
    runs (heartbeats, timers). Each stand-in below returns only once the loop has run after it began."""
    import asyncio
    import threading

    from streams.app import Worker

    cfg = load_config(overrides=TINY, environ={}, root=StreamConfig)
    worker = Worker(cfg, tmp_path, log=lambda _m: None)
    waiting: list[threading.Event] = []
    worked = []

    def needs_the_loop(part):
        def work(*_args, **_kwargs):
            loop_ran = threading.Event()
            waiting.append(loop_ran)
            assert loop_ran.wait(10), f"the event loop was held while the {part} worked"
            worked.append(part)
            return 0
        return work

    monkeypatch.setattr(worker.core, "flush", needs_the_loop("state save"))
    monkeypatch.setattr(worker.core, "finish_runs", needs_the_loop("version commit"))
    monkeypatch.setattr(worker.metrics, "update", lambda *_args: None)  # no consumer: the app is not started

    async def beating(work):  # what the loop does for a heartbeat while ``work`` runs: wake up now and then
        running = asyncio.ensure_future(work)
        while not running.done():
            for event in waiting:
                event.set()
            await asyncio.sleep(0.01)
        await running

    async def scenario():
        await worker.tick()
        assert worked == []  # the beat returned at once: its work is a task of its own
        await worker.tick()  # a beat while that work goes on returns at once and starts no second one
        await beating(worker.committed())

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert worked == ["state save", "version commit"]


def test_a_member_that_cannot_reach_the_broker_to_leave_says_so_in_one_line():
    from streams.broker import free_port
    from streams.membership import leave_group
    from streams.settings import KafkaConfig

    line = leave_group(KafkaConfig(bootstrap=f"127.0.0.1:{free_port()}"), "memstream", "worker-1", timeout_s=1.0)
    assert line.startswith("left the group only when its session times out: nothing listens at 127.0.0.1:"), line
    assert "\n" not in line
