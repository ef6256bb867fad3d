"""Subscribers hear model-updated events while a consolidation holds every core.

A run trains with one torch thread per core in its own process; whoever follows the events — the
`memstream watch` command, a :class:`ModelUpdateSubscriber`, the hot reloader fed by one — must
still hear each event within seconds of its publication, not once the run is over.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from consumers.hot_reload import AdapterHotReloader
from consumers.subscriber import ModelUpdateSubscriber
from contracts.codec import EventCodec

WITHIN_S = 2.0
EVENTS = 5

#: What a run does to the machine: matrix products on every core, for at most a minute.
TRAINER_LOAD = """
import os, time, torch
torch.set_num_threads(os.cpu_count())
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
print("busy", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end:
    a = (a @ b).tanh()
"""


def _update(profile: str, n: int) -> dict:
    """A model-updated event as a refused run publishes it (nothing to load; every follower reads it)."""
    return {"v": 1, "id": f"{profile}/run/r{n}", "profile": profile, "version": None, "parent_version": None,
            "run_id": f"r{n}", "ts": time.time(), "base_model": "memstream-byte", "adapter_path": None,
            "sha256": None, "trigger": "manual", "samples_new": 1, "samples_replay": 0, "steps": 1,
            "duration_s": 1.0, "metrics": {}, "accepted": False, "reason": "load test", "status": "rejected"}


def test_watch_subscriber_and_hot_reloader_hear_each_event_within_seconds_while_training(stack):
    heard: dict[str, dict[str, float]] = {"watch": {}, "subscriber": {}, "hot reloader": {}}
    watch = subprocess.Popen([sys.executable, "-m", "memstream", "watch", "model-updated", "--json",
                              *stack.set_args()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def read_watch():
        for line in watch.stdout:
            heard["watch"][json.loads(line)["id"]] = time.time()

    reloader = AdapterHotReloader(stack.state, "ann", stack.config.learner_config())
    plain_handle = reloader.handle

    def handle(event):
        heard["hot reloader"][event["id"]] = time.time()
        return plain_handle(event)

    reloader.handle = handle
    stop = threading.Event()

    def subscribe():
        with ModelUpdateSubscriber(stack.config.kafka) as sub:
            while not stop.is_set():
                for _, event in sub.poll(0.2):
                    heard["subscriber"][event["id"]] = time.time()

    def follow():
        with ModelUpdateSubscriber(stack.config.kafka) as sub:
            reloader.follow(sub, timeout_s=90)

    followers = [threading.Thread(target=f, daemon=True) for f in (read_watch, subscribe, follow)]
    for thread in followers:
        thread.start()
    load = None
    producer = stack.raw_producer()
    topic = stack.config.kafka.topic_prefix + "model-updated"

    def publish(n: int) -> tuple[str, float]:
        event = _update("ann", n)
        producer.send(topic, key=b"ann", value=EventCodec.encode(event)).get(timeout=30)
        return event["id"], time.time()

    try:
        # warm up: every follower is subscribed and has heard an event before the load starts
        warm_up = []
        for n in range(90):
            warm_up.append(publish(-n)[0])
            if all(any(eid in got for eid in warm_up) for got in heard.values()):
                break
            time.sleep(1)
        assert all(any(eid in got for eid in warm_up) for got in heard.values()), f"not every follower started: {heard}"
        load = subprocess.Popen([sys.executable, "-c", TRAINER_LOAD], stdout=subprocess.PIPE, text=True)
        assert load.stdout.readline().strip() == "busy"
        sent = {}
        for n in range(1, EVENTS + 1):
            time.sleep(0.5)
            eid, at = publish(n)
            sent[eid] = at
        stack.wait_for(lambda: all(set(sent) <= set(got) for got in heard.values()), 60,
                       f"every follower to hear {EVENTS} events under load")
        assert load.poll() is None, "the load ended before the events were heard"
        late = {who: {eid: round(got[eid] - at, 2) for eid, at in sent.items() if got[eid] - at > WITHIN_S}
                for who, got in heard.items()}
        assert not any(late.values()), f"heard more than {WITHIN_S} s after publication: {late}"
    finally:
        stop.set()
        producer.close()
        for proc in (load, watch):
            if proc is not None:
                proc.kill()
                proc.wait()
