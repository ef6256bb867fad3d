"""The HTTP side of ``memstream serve``: an OpenAI-compatible API over :class:`ServedModels`.

- ``POST /v1/chat/completions`` — ``model`` is a profile's name; ``stream: true`` answers with
  server-sent events (``data: {chunk}`` … ``data: [DONE]``); each reply's ``system_fingerprint`` names
  the version that wrote it (``ann-v3``, ``ann-base``).
- ``GET /v1/models`` — one model per profile; ``GET /health``; ``GET /metrics`` (requests, failures,
  latency p50 / p95, versions served, swaps).

Errors have OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``: an unknown model is a
404, a malformed body a 400.

>>> error_body("no such model", "model_not_found", param="model")["error"]["code"]
'model_not_found'
>>> problem_with({"model": "ann", "messages": []}, ["ann"])
(400, "'messages' must be a non-empty list of {role, content} objects", 'messages', 'invalid_request_error')
>>> problem_with({"model": "zed", "messages": [{"role": "user", "content": "hi"}]}, ["ann"])[0]
404
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

__all__ = ["error_body", "make_app", "problem_with"]

ROLES = ("system", "user", "assistant")


def error_body(message: str, code: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def problem_with(body: Any, profiles: list[str]) -> tuple[int, str, str | None, str] | None:
    """What is wrong with a chat request, as ``(status, message, param, code)``; None when it can be served."""
    if not isinstance(body, dict):
        return 400, "the request body must be a JSON object", None, "invalid_request_error"
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return 400, "'model' is required: one of " + ", ".join(profiles), "model", "invalid_request_error"
    if model not in profiles:
        return (404, f"The model '{model}' does not exist; this server has: {', '.join(profiles)}", "model",
                "model_not_found")
    messages = body.get("messages")
    if (not isinstance(messages, list) or not messages or
            not all(isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), (str, type(None)))
                    for m in messages)):
        return 400, "'messages' must be a non-empty list of {role, content} objects", "messages", \
            "invalid_request_error"
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            return 400, f"'{key}' must be a positive integer", key, "invalid_request_error"
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2):
        return 400, "'temperature' must be a number from 0 to 2", "temperature", "invalid_request_error"
    if body.get("n") not in (None, 1):
        return 400, "only n = 1 is served", "n", "invalid_request_error"
    return None


def make_app(served, started: float | None = None):
    """The aiohttp application answering for ``served`` (a :class:`ServedModels`)."""
    from aiohttp import web

    started = started or time.time()

    def reply_error(status: int, message: str, param: str | None, code: str) -> web.Response:
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return web.json_response(error_body(message, code, param, kind), status=status)

    async def chat(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return reply_error(400, "the request body is not JSON", None, "invalid_request_error")
        problem = problem_with(body, served.profiles)
        if problem is not None:
            return reply_error(*problem)
        profile = body["model"]
        if profile not in served.served:
            why = served.refused.get(profile, ("it is still loading",))[0]
            return web.json_response(error_body(f"{profile} cannot be served yet: {why}", "model_not_ready",
                                                "model", "server_error"), status=503)
        loop = asyncio.get_running_loop()
        if not body.get("stream"):
            try:
                reply = await loop.run_in_executor(None, served.chat, profile, body)
            except ValueError as exc:  # the engine's own check of a field
                return reply_error(400, str(exc), None, "invalid_request_error")
            return web.json_response(reply)
        queue: asyncio.Queue = asyncio.Queue()

        def on_chunk(chunk: dict) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, chunk)

        def produce() -> None:
            try:
                served.chat(profile, body, on_chunk)
            except Exception as exc:  # noqa: BLE001 - sent to the client as the stream's last event
                loop.call_soon_threadsafe(queue.put_nowait, error_body(str(exc), "server_error", None, "server_error"))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        done = loop.run_in_executor(None, produce)
        while (chunk := await queue.get()) is not None:
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await done
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": p, "object": "model", "created": int(started), "owned_by": "memstream",
             "version": served.served[p].version if p in served.served else None} for p in served.profiles]})

    async def health(_request: web.Request) -> web.Response:
        ready = all(p in served.served for p in served.profiles)
        return web.json_response({"status": "ok" if ready else "loading", "engine": served.engine.name,
                                  "serving": {p: one.label for p, one in sorted(served.served.items())}},
                                 status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        return web.json_response(served.metrics())

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
