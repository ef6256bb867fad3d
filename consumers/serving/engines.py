"""What answers a chat request for ``memstream serve``: llama.cpp (the base's f16 GGUF with each profile's
GGUF adapter) or transformers + PEFT (the version checked out in torch).

An engine is told which version each profile serves (:meth:`switch`) and answers OpenAI chat bodies
for a profile (:meth:`chat`: the completion, or each chunk to ``on_chunk`` when ``stream`` is set).

- **llama.cpp** holds one server per base GGUF with every profile's adapter loaded; a request turns on
  its profile's adapter alone (per-request LoRA scales), so profiles share one loaded base. A new
  version needs a new server (llama.cpp loads adapters at start): it is started beside the old one,
  requests go to it from then on, and the old one is closed once its last request is answered.
- **torch** holds one model per profile and answers one request at a time per profile (torch uses
  every core for one); a new version is checked out between two requests, which wait for it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["ENGINES", "EngineError", "LlamaCppEngine", "ServedVersion", "TorchEngine", "default_engine"]

ENGINES = ("llama.cpp", "torch")


class EngineError(RuntimeError):
    """A version the engine cannot serve (the message says why and what to do)."""


@dataclass(frozen=True)
class ServedVersion:
    """What a profile serves: ``version`` (None: the base) of the registry at ``registry_dir``."""

    profile: str
    version: int | None
    config: Any  # the LearnerConfig the version was trained with (model section)
    registry_dir: Path
    adapter_gguf: Path | None = None  # verified against the version's manifest

    @property
    def label(self) -> str:
        return f"{self.profile}-v{self.version}" if self.version is not None else f"{self.profile}-base"


@contextlib.contextmanager
def refusing(one: ServedVersion):
    """A version whose files fail their manifest, or cannot be read, becomes an EngineError naming it."""
    from learner.store.registry import RegistryError
    from learner.store.storage import CorruptStateError

    try:
        yield
    except (CorruptStateError, RegistryError, OSError) as exc:
        raise EngineError(f"version {one.version}: {exc}") from None


def registry_of(one: ServedVersion):
    from learner.store.registry import ModelRegistry

    return ModelRegistry.open(one.registry_dir.parent, one.profile, "", writer=False)


def default_engine() -> str:
    """llama.cpp where its wheel is installed, else torch."""
    import importlib.util

    return "llama.cpp" if importlib.util.find_spec("xllamacpp") is not None else "torch"


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


class _Generation:
    """One llama.cpp server and the profiles whose adapters it holds; closed when retired and idle."""

    def __init__(self, server, adapter_ids: dict[str, int], served: dict[str, ServedVersion]):
        self.server, self.adapter_ids, self.served = server, adapter_ids, served
        self.leases, self.retired = 0, False

    def scales(self, profile: str) -> list[dict[str, float]]:
        mine = self.adapter_ids.get(profile)
        return [{"id": i, "scale": 1.0 if i == mine else 0.0} for i in sorted(self.adapter_ids.values())]

    def close(self) -> None:
        server, self.server = self.server, None
        del server  # frees the model and its context (the server's own thread ends)


class LlamaCppEngine:
    """llama.cpp through its Python wheel (``xllamacpp``): base GGUF + GGUF adapters."""

    name = "llama.cpp"

    def __init__(self, threads: int = 2, n_ctx: int = 4096, parallel: int = 2,
                 base_gguf: Callable[[Any], Path] | None = None):
        from learner.model.base_gguf import base_gguf as cached_base_gguf

        self.threads, self.n_ctx, self.parallel = threads, n_ctx, parallel
        self._base_gguf = base_gguf or (lambda cfg: cached_base_gguf(cfg.model))
        self._lock = threading.Lock()
        self._by_profile: dict[str, _Generation] = {}

    def switch(self, served: dict[str, ServedVersion]) -> None:
        """Serve ``served`` (every profile): new servers are started first, then swapped in."""
        for profile, one in served.items():
            if one.version is None or self.version_of(profile) == one:
                continue
            if one.adapter_gguf is None:
                raise EngineError(f"{one.label} has no GGUF adapter (registry.gguf_lora was off when it was "
                                  "trained): serve it with --engine torch")
            with refusing(one):  # llama.cpp reads the files itself: checked here, before they are loaded
                registry_of(one).verify(one.version)
        groups: dict[Path, dict[str, ServedVersion]] = {}
        for profile, one in served.items():
            groups.setdefault(self._base_file(one), {})[profile] = one
        started = {base: self._start(base, group) for base, group in groups.items()}
        with self._lock:
            old = {id(g): g for g in self._by_profile.values()}
            self._by_profile = {p: gen for gen in started.values() for p in gen.served}
        for gen in old.values():
            self._retire(gen)

    def _base_file(self, one: ServedVersion) -> Path:
        from learner.model.bases import BaseModelError
        from learner.model.export import ExportError

        try:
            return self._base_gguf(one.config)
        except (ExportError, BaseModelError) as exc:
            raise EngineError(f"{one.label}: {exc}; serve it with --engine torch") from None

    def _start(self, base: Path, served: dict[str, ServedVersion]) -> _Generation:
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(base)
        params.n_ctx, params.n_parallel = self.n_ctx * self.parallel, self.parallel
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = self.threads
        params.verbosity = 0  # llama.cpp's errors only, not a line per request
        with_adapter = sorted(p for p, one in served.items() if one.adapter_gguf is not None)
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(served[p].adapter_gguf), 0.0)
                                for p in with_adapter]
        params.lora_init_without_apply = True
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:  # noqa: BLE001 - llama.cpp's own message says what is wrong
            raise EngineError(f"llama.cpp could not load {base.name} with "
                              f"{', '.join(served[p].label for p in with_adapter) or 'no adapter'}: {exc}") from None
        return _Generation(server, {p: i for i, p in enumerate(with_adapter)}, served)

    def _retire(self, gen: _Generation) -> None:
        with self._lock:
            gen.retired = True
            idle = gen.leases == 0
        if idle:
            gen.close()

    def version_of(self, profile: str) -> ServedVersion | None:
        gen = self._by_profile.get(profile)
        return gen.served[profile] if gen is not None else None

    def chat(self, profile: str, body: dict[str, Any], on_chunk: Callable[[dict], None] | None = None) -> dict | None:
        with self._lock:
            gen = self._by_profile[profile]
            gen.leases += 1
        try:
            request = {**body, "lora": gen.scales(profile)} if gen.adapter_ids else dict(body)
            request.pop("model", None)
            label = gen.served[profile].label

            def named(part: dict) -> dict:
                part.update(model=profile, system_fingerprint=label)
                part.pop("timings", None)
                return part

            if request.get("stream"):
                gen.server.handle_chat_completions(request, lambda chunk: on_chunk(named(chunk)))
                return None
            return named(gen.server.handle_chat_completions(request))
        finally:
            with self._lock:
                gen.leases -= 1
                idle = gen.retired and gen.leases == 0
            if idle:
                gen.close()

    def close(self) -> None:
        with self._lock:
            gens, self._by_profile = {id(g): g for g in self._by_profile.values()}, {}
        for gen in gens.values():
            self._retire(gen)


class TorchEngine:
    """transformers + PEFT: one checked-out model per profile (see the module's notes)."""

    name = "torch"

    def __init__(self, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self._live: dict[str, Any] = {}
        self._served: dict[str, ServedVersion] = {}
        self._locks: dict[str, threading.Lock] = {}

    def switch(self, served: dict[str, ServedVersion]) -> None:
        from learner.model.adapted import AdaptedModel
        from learner.store.versions import checkout

        for profile, one in served.items():
            if self._served.get(profile) == one:
                continue
            lock = self._locks.setdefault(profile, threading.Lock())
            with refusing(one), lock:  # requests of this profile wait for the checkout, which verifies first
                live = self._live.get(profile) or AdaptedModel(one.config.model)
                checkout(live, registry_of(one) if one.version is not None else None, one.version)
                self._live[profile], self._served[profile] = live, one

    def version_of(self, profile: str) -> ServedVersion | None:
        return self._served.get(profile)

    def chat(self, profile: str, body: dict[str, Any], on_chunk: Callable[[dict], None] | None = None) -> dict | None:
        from consumers.serving.torch_chat import generate_reply

        with self._locks[profile]:
            live, label = self._live[profile], self._served[profile].label
            created, cid = int(time.time()), completion_id()
            head = {"id": cid, "created": created, "model": profile, "system_fingerprint": label}

            def chunk(delta: dict, finish: str | None = None) -> None:
                on_chunk({**head, "object": "chat.completion.chunk",
                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

            streaming = bool(body.get("stream"))
            if streaming:
                chunk({"role": "assistant", "content": None})
            text, finish, usage = generate_reply(live, body, (lambda piece: chunk({"content": piece}))
                                                 if streaming else None)
            if streaming:
                chunk({}, finish)
                return None
            return {**head, "object": "chat.completion", "usage": usage,
                    "choices": [{"index": 0, "finish_reason": finish,
                                 "message": {"role": "assistant", "content": text}}]}

    def close(self) -> None:
        self._live.clear()
