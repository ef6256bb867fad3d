"""The broker goes away mid-stream for longer than the client timeouts and comes back on the same port with
the same data: a producer either delivers or raises a clear error (no silent drop), and the worker
reconnects on its own and loses nothing."""

from __future__ import annotations

import signal
import time

import pytest

from memstream.samples.stream import make_sample_stream
from streams.broker import free_port
from tests.integration.conftest import Stack, new_broker, require_kafka


def _own_broker(tmp_path, broker_kind):
    """A broker that the test stops and starts itself, and a stack on it."""
    if broker_kind == "kafka":
        require_kafka()
    broker = new_broker(broker_kind, tmp_path / "broker", free_port()).start()
    return broker, Stack(broker.bootstrap, tmp_path)


@pytest.mark.slow
@pytest.mark.brokers("embedded", "kafka")
def test_worker_rides_out_a_broker_outage_and_loses_nothing(tmp_path, broker_kind):
    broker, stack = _own_broker(tmp_path, broker_kind)
    events = make_sample_stream(n_per_phase=(100, 100), seed=60, profile="out")
    try:
        worker = stack.start_worker()
        with stack.producer() as producer:
            producer.publish_many(events[:100])
        # stop the broker the moment the state is saved: the offset commit that follows is then still in
        # flight, so the group comes back with nothing committed (the case streams/compat.py's
        # rewind_uncommitted_partitions is for: without it the worker sat at the end of the log, 100 unread)
        stack.wait_for(lambda: stack.learner_state("out").get("events_seen") == 100, 120, "the first half",
                       interval=0.005)

        broker.stop()
        outage_started = time.monotonic()
        lost = events[100]
        raised = None
        started = time.monotonic()
        try:
            with stack.producer() as producer:
                producer.publish(lost)
        except ConnectionError as exc:  # PublishError, or no broker to bootstrap from: both name the broker
            raised = exc
        assert raised is None or broker.bootstrap in str(raised), str(raised)
        waited = time.monotonic() - started
        assert raised is not None, "publishing to a stopped broker must fail loudly"
        assert waited < 3 * stack.config.kafka.request_timeout_s + 10, f"the error took {waited:.0f} s"
        while time.monotonic() - outage_started < 20:  # longer than session (6 s) and request (10 s) timeouts
            time.sleep(1)
        assert worker.poll() is None, "the worker must not exit while the broker is away"

        outage_s = time.monotonic() - outage_started
        broker = new_broker(broker_kind, tmp_path / "broker", broker.port).start()  # same port, same data
        with stack.producer() as producer:
            producer.publish_many(events[100:])  # includes the event whose publish failed: ids make it safe
        stack.wait_for(lambda: stack.learner_state("out").get("events_seen") == len(events), 240,
                       "every event after the broker came back")
        time.sleep(3)
        state = stack.learner_state("out")
        assert state["events_seen"] == len(events)
        assert worker.poll() is None, "the worker reconnected by itself"
        print(f"outage {outage_s:.0f} s; publish during it failed after {waited:.1f} s "
              f"with {type(raised).__name__}: {raised}; {state['events_seen']} of {len(events)} counted")
    finally:
        stack.stop_all()
        broker.stop()


@pytest.mark.brokers("embedded", "kafka")
def test_a_worker_whose_broker_went_away_still_stops_promptly_on_sigterm_with_its_state_saved(tmp_path, broker_kind):
    broker, stack = _own_broker(tmp_path, broker_kind)
    events = make_sample_stream(n_per_phase=(60,), seed=61, profile="gone")
    try:
        worker = stack.start_worker()
        with stack.producer() as producer:
            producer.publish_many(events)
        stack.wait_for(lambda: stack.learner_state("gone").get("events_seen") == len(events), 120, "every event")
        broker.stop()
        time.sleep(2)  # the clients notice: their connections are gone
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        stopped_s = time.monotonic() - started
        print(f"stopped {stopped_s:.1f} s after SIGTERM with the broker away; exit code {code}")
        assert code == 0 and stopped_s < 15, f"exit code {code} after {stopped_s:.1f} s"
        assert stack.learner_state("gone")["events_seen"] == len(events)
    finally:
        stack.stop_all()
        broker.stop()
