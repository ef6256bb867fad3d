"""The whole loop over a real broker: publish → faust worker → consolidation → ModelUpdated → hot reload."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

from consumers.hot_reload import AdapterHotReloader
from consumers.serving import ServeProcess
from consumers.serving.engines import TorchEngine
from learner.store.registry import ModelRegistry
from memstream.samples.stream import make_sample_stream

PROFILES = ("ana", "ben", "cy")


def three_profile_stream() -> list[dict]:
    """2,001 events: three profiles, each moving through three phases of domains."""
    events = []
    for i, profile in enumerate(PROFILES):
        events += make_sample_stream(n_per_phase=(267, 200, 200), seed=10 + i, profile=profile)
    events.sort(key=lambda e: e["ts"])  # interleaved, as they would arrive
    return events


def test_three_profiles_consolidate_publish_and_hot_reload(stack):
    events = three_profile_stream()
    per_profile = Counter(e["profile"] for e in events)
    stack.overrides += ["worker.warm_trainers=true"]  # as a worker starts by default
    worker = stack.start_worker()
    with stack.subscriber("model-updated", "drift-alerts") as sub, stack.producer() as producer:
        updates: dict[str, list[dict]] = {p: [] for p in PROFILES}
        alerts: list[dict] = []

        def accepted_everywhere(n):
            def check():
                for kind, event in sub.poll(1.0):
                    (updates[event["profile"]] if kind == "model-updated" else alerts).append(event)
                return all(sum(u["accepted"] for u in updates[p]) >= n for p in PROFILES)
            return check

        # the first third founds each profile's model; the rest must then come as LoRA adapters
        producer.publish_many(events[:600])
        stack.wait_for(accepted_everywhere(1), 200, "a first version per profile")
        producer.publish_many(events[600:])
        stack.wait_for(accepted_everywhere(2), 200, "an accepted LoRA version per profile")
        stack.wait_for(lambda: accepted_everywhere(2)() and alerts, 120, "a drift alert")
        stack.wait_for(lambda: all(stack.learner_state(p).get("events_seen") == per_profile[p] for p in PROFILES),
                       120, "every event counted")
    assert worker.poll() is None, "the worker must not have restarted or died"
    os.kill(worker.pid, signal.SIGQUIT)  # every thread's stack to its log; it goes on running
    stack.wait_for(lambda: "(most recent call first)" in worker.log_path.read_text(errors="replace"), 30,
                   "the thread stacks of kill -QUIT")
    time.sleep(0.5)
    assert worker.poll() is None, "kill -QUIT stopped the worker"
    # training happens in the trainer process: committing its versions never loads torch on the event loop
    assert "libtorch" not in Path(f"/proc/{worker.pid}/maps").read_text(), "the worker process imported torch"
    assert "trainer ready in " in worker.log_path.read_text(errors="replace")  # started with the worker

    for profile in PROFILES:
        state = stack.learner_state(profile)
        assert state["events_seen"] == per_profile[profile]  # exactly once: nothing lost, nothing twice
        registry = ModelRegistry.open(stack.state, profile, "", writer=False)
        for version in registry.kept_versions():
            registry.verify(version)
        for update in updates[profile]:
            assert {"v", "version", "parent_version", "run_id", "sha256", "trigger", "metrics", "accepted",
                    "samples_new", "samples_replay", "steps", "duration_s", "base_model"} <= set(update)
            if update["accepted"]:
                blob = (stack.state / update["adapter_path"]).read_bytes()  # relative to the state directory
                assert hashlib.sha256(blob).hexdigest() == update["sha256"]
        assert any(u["accepted"] and u["adapter_path"].endswith("adapter_model.safetensors")
                   for u in updates[profile]), "a LoRA adapter was published"

    alert = alerts[0]
    assert alert["divergence"] > alert["threshold"]
    assert alert["top_features"] and {"feature", "direction", "baseline_p", "window_p"} <= set(alert["top_features"][0])

    # an inference process follows the newest accepted version of one profile
    reloader = AdapterHotReloader(stack.state, "ana", stack.config.learner_config())
    for update in sorted(updates["ana"], key=lambda u: u["ts"]):
        reloader.handle(update)
    newest = max(u["version"] for u in updates["ana"] if u["accepted"])
    assert reloader.version == newest and reloader.model is not None


def test_serve_and_the_hot_reloader_follow_each_version_and_refuse_a_tampered_adapter(stack):
    events = make_sample_stream(n_per_phase=(150, 150), seed=4, profile="dee")
    stack.start_worker()
    # an OpenAI-compatible endpoint that learns of new versions from model-updated events alone
    serving = ServeProcess(stack.state, ["dee"], TorchEngine(), port=0, poll_s=3600, kafka=stack.config.kafka,
                           config=stack.config.learner_config())
    with serving, stack.subscriber("model-updated") as sub, stack.producer() as producer:
        accepted: list[dict] = []

        def accepted_versions(n):
            def check():
                accepted.extend(e for _k, e in sub.poll(1.0) if e["accepted"])
                return len(accepted) >= n
            return check

        producer.publish_many(events[:150])
        stack.wait_for(accepted_versions(1), 150, "a first version")
        stack.wait_for(lambda: "dee" in serving.models.served, 60, "serve to follow the first version")
        producer.publish_many(events[150:])
        stack.wait_for(accepted_versions(2), 150, "a second version")
        second = accepted[1]["version"]
        stack.wait_for(lambda: serving.models.served["dee"].version == second, 60, "serve to follow the second")
        reply = json.loads(urllib.request.urlopen(urllib.request.Request(
            serving.url + "/v1/chat/completions", json.dumps({"model": "dee", "max_tokens": 8, "messages": [
                {"role": "user", "content": "What did I cook?"}]}).encode(), {"Content-Type": "application/json"}),
            timeout=60).read())
        assert reply["system_fingerprint"] == f"dee-v{second}" and reply["choices"][0]["message"]["content"] is not None
        assert serving.models.metrics()["failures"] == 0
    reloader = AdapterHotReloader(stack.state, "dee", stack.config.learner_config())
    first, second = accepted[0], accepted[1]
    assert reloader.handle(first)
    path = stack.state / second["adapter_path"]
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # one flipped bit after the version was written
    path.write_bytes(bytes(blob))
    assert not reloader.handle(second)
    assert reloader.version == first["version"]
    assert "sha256" in reloader.refused[0][1]
