"""memstream serve's HTTP API (OpenAI's shapes: errors, streams, models) and the vLLM hand-off, each against a
real HTTP server on a local port; the engines themselves are tested on the real model in test_real_model.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.request

import pytest

from consumers.serving import ServeProcess
from consumers.serving.engines import ServedVersion
from consumers.vllm import VllmHandoff
from learner.store.registry import ModelRegistry


@contextlib.contextmanager
def http_app(app):
    """``app`` (aiohttp) listening on a free local port, in a thread; yields its URL."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


def call(url: str, body=None, raw: bytes | None = None) -> tuple[int, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# -- the OpenAI-compatible API, over an engine that echoes ---------------------------------------------
class EchoModels:
    """Stands in for ServedModels: ``ann`` served at v2, ``ben`` not loaded (its version failed)."""

    profiles = ["ann", "ben"]
    refused = {"ben": ("version 3: adapter.gguf fails its sha256 check", 3)}

    class engine:
        name = "echo"

        @staticmethod
        def close():
            pass

    def __init__(self):
        self.served = {"ann": ServedVersion("ann", 2, None, None)}
        self.asked = []

    def refresh(self):
        return []

    def chat(self, profile, body, on_chunk=None):
        self.asked.append((profile, body))
        words = ["you", " said", " " + body["messages"][-1]["content"]]
        head = {"id": "chatcmpl-1", "model": profile, "system_fingerprint": "ann-v2", "created": 0}
        if not body.get("stream"):
            return {**head, "object": "chat.completion", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "".join(words)}}]}
        for word in words:
            on_chunk({**head, "object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
        return None

    def metrics(self):
        return {"requests": len(self.asked)}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    process = ServeProcess(tmp_path_factory.mktemp("state"), EchoModels.profiles, EchoModels.engine, port=0,
                           poll_s=3600)
    process.models = EchoModels()
    with process:
        yield process.url, process.models


def test_a_chat_request_is_answered_in_openai_shape_by_the_profile_named_as_model(api):
    url, models = api
    status, body = call(url + "/v1/chat/completions", {"model": "ann", "messages": [{"role": "user", "content": "hi"}]})
    reply = json.loads(body)
    assert status == 200 and reply["choices"][0]["message"]["content"] == "you said hi"
    assert models.asked[-1][0] == "ann" and reply["system_fingerprint"] == "ann-v2"


def test_a_streamed_reply_is_server_sent_events_ending_with_done(api):
    url, _ = api
    status, body = call(url + "/v1/chat/completions", {"model": "ann", "stream": True,
                                                       "messages": [{"role": "user", "content": "hi"}]})
    events = [line.removeprefix(b"data: ") for line in body.split(b"\n\n") if line]
    assert status == 200 and events[-1] == b"[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1]) == "you said hi"


@pytest.mark.parametrize("request_body, status, code, param", [
    ({"model": "zed", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found", "model"),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request_error", "model"),
    ({"model": "ann", "messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_request_error", "messages"),
    ({"model": "ann", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400,
     "invalid_request_error", "max_tokens"),
    ({"model": "ann", "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, 400,
     "invalid_request_error", "temperature"),
    ({"model": "ben", "messages": [{"role": "user", "content": "hi"}]}, 503, "model_not_ready", "model"),
])
def test_a_request_that_cannot_be_served_gets_an_openai_error_body(api, request_body, status, code, param):
    url, models = api
    before = len(models.asked)
    got, body = call(url + "/v1/chat/completions", request_body)
    error = json.loads(body)["error"]
    assert (got, error["code"], error["param"]) == (status, code, param) and error["message"]
    assert len(models.asked) == before  # never reached the engine


def test_a_body_that_is_not_json_is_a_400(api):
    url, _ = api
    status, body = call(url + "/v1/chat/completions", raw=b"{not json")
    assert status == 400 and json.loads(body)["error"]["message"] == "the request body is not JSON"


def test_models_health_and_metrics_say_what_is_served(api):
    url, _ = api
    models = json.loads(call(url + "/v1/models")[1])
    assert [(m["id"], m["version"]) for m in models["data"]] == [("ann", 2), ("ben", None)]
    status, health = call(url + "/health")
    assert status == 503 and json.loads(health)["serving"] == {"ann": "ann-v2"}  # ben is not loaded
    assert "requests" in json.loads(call(url + "/metrics")[1])


# -- the vLLM hand-off, against an HTTP server with vLLM's two routes ---------------------------------------
def vllm_like(seen: list, refuse: set):
    from aiohttp import web

    async def load(request):
        body = await request.json()
        seen.append(("load", body))
        if body["lora_name"] in refuse:
            return web.json_response({"error": {"message": "The lora adapter failed to load", "code": 400}},
                                     status=400)
        return web.Response(text=f"Success: LoRA adapter '{body['lora_name']}' added successfully.")

    async def unload(request):
        seen.append(("unload", await request.json()))
        return web.Response(text="Success")

    app = web.Application()
    app.router.add_post("/v1/load_lora_adapter", load)
    app.router.add_post("/v1/unload_lora_adapter", unload)
    return app


def commit_lora(state, profile: str, rank: int, **extra) -> int:
    registry = ModelRegistry.open(state, profile, "smollm2-135m-instruct")
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj"], **extra}
    return registry.commit_version({"adapter_config.json": json.dumps(config).encode(),
                                    "adapter_model.safetensors": b"weights"}, {"run_id": f"r{rank}", "mode": "lora"})


def test_each_new_version_is_loaded_into_vllm_in_place_under_the_profiles_name(tmp_path):
    seen: list = []
    commit_lora(tmp_path, "ann", 8)
    with http_app(vllm_like(seen, refuse=set())) as url:
        handoff = VllmHandoff(url, tmp_path, max_lora_rank=16, served_state="/mnt/state")
        handoff.catch_up(["ann"])
        v2 = commit_lora(tmp_path, "ann", 16)
        assert handoff.handle({"profile": "ann", "version": v2, "accepted": True})
        assert not handoff.handle({"profile": "ann", "version": v2, "accepted": True})  # the same event again
        assert handoff.handle({"profile": "ann", "version": None, "action": "reset", "accepted": True})
    assert seen == [
        ("load", {"lora_name": "ann", "lora_path": "/mnt/state/ann/versions/v0001", "load_inplace": True}),
        ("load", {"lora_name": "ann", "lora_path": "/mnt/state/ann/versions/v0002", "load_inplace": True}),
        ("unload", {"lora_name": "ann"})]


def test_an_adapter_vllm_would_refuse_is_not_sent_and_says_why(tmp_path):
    seen: list = []
    commit_lora(tmp_path, "ann", 64)
    commit_lora(tmp_path, "bo", 8, modules_to_save=["lm_head"])
    commit_lora(tmp_path, "cy", 8)
    (tmp_path / "cy" / "versions" / "v0001" / "adapter_model.safetensors").write_bytes(b"changed")
    commit_lora(tmp_path, "dee", 8)
    with http_app(vllm_like(seen, refuse={"dee"})) as url:
        handoff = VllmHandoff(url, tmp_path, max_lora_rank=16)
        handoff.catch_up(["ann", "bo", "cy", "dee"])
    why = {profile: reason for profile, _version, reason in handoff.refused}
    assert "rank 64, over the server's --max-lora-rank 16" in why["ann"]
    assert "saves whole modules" in why["bo"] and "fails its sha256 check" in why["cy"]
    assert "answered 400" in why["dee"] and "failed to load" in why["dee"]
    assert [body["lora_name"] for _route, body in seen] == ["dee"] and handoff.sent == {}


def test_a_base_llama_cpp_cannot_hold_is_one_clear_error_naming_what_to_do(tmp_path):
    from consumers.serving.engines import EngineError, LlamaCppEngine
    from learner.config import load_config

    byte = load_config(overrides=["model.base=memstream-byte"], environ={})
    with pytest.raises(EngineError, match="byte model has no GGUF form.*--engine torch"):
        LlamaCppEngine().switch({"ann": ServedVersion("ann", None, byte, tmp_path / "ann")})
