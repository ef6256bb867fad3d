"""``memstream serve``: an OpenAI-compatible endpoint that answers with each profile's newest version.

:class:`ServeProcess` puts the pieces together: an engine (:mod:`consumers.serving.engines`), the
versions served (:mod:`consumers.serving.served`), the HTTP API (:mod:`consumers.serving.app`) and what
keeps the versions current — model-updated events when a broker is given, and a poll of the
registries every ``poll_s`` (rollbacks, resets and ``memstream learn`` runs publish no event).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path

from consumers.serving.engines import ENGINES, EngineError, LlamaCppEngine, TorchEngine, default_engine
from consumers.serving.served import ServedModels

__all__ = ["ENGINES", "EngineError", "ServeProcess", "make_engine"]

logger = logging.getLogger("memstream.serve")


def make_engine(name: str, threads: int | None = None):
    """``llama.cpp``, ``torch`` or ``auto`` (llama.cpp where its wheel is installed)."""
    name = default_engine() if name == "auto" else name
    if name == "llama.cpp":
        import importlib.util

        if importlib.util.find_spec("xllamacpp") is None:
            raise EngineError("the llama.cpp engine needs its wheel: pip install xllamacpp (or --engine torch)")
        return LlamaCppEngine(threads=threads or 2)
    if name == "torch":
        return TorchEngine(threads=threads)
    raise EngineError(f"unknown engine {name!r}: one of auto, {', '.join(ENGINES)}")


class ServeProcess:
    """The endpoint for ``profiles`` of ``state_dir``, on ``host:port`` (port 0: a free one)."""

    def __init__(self, state_dir: str | Path, profiles: list[str], engine, host: str = "127.0.0.1",
                 port: int = 8000, poll_s: float = 2.0, kafka=None, config=None):
        self.models = ServedModels(state_dir, profiles, engine, config)
        self.host, self.port, self.poll_s, self.kafka = host, port, poll_s, kafka
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        self.ready = threading.Event()

    # -- keeping versions current ------------------------------------------------------------
    def notify(self) -> None:
        """Look at the registries now (what a model-updated event does), not at the next poll."""
        self._wake.set()

    def _follow_registries(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if not self._stop.is_set():
                self.models.refresh()

    def _follow_events(self) -> None:
        from consumers.subscriber import ModelUpdateSubscriber
        from contracts.topics import BrokerUnavailable

        try:
            # from the oldest retained event: one published before the first fetch is not missed, and an old
            # one costs a look at the registry
            subscriber = ModelUpdateSubscriber(self.kafka, from_beginning=True)
        except BrokerUnavailable as exc:
            logger.warning("%s: following the registries only (every %g s)", exc, self.poll_s)
            return
        with subscriber:
            while not self._stop.is_set():
                for _kind, event in subscriber.poll(0.5):
                    if event.get("profile") in self.models.profiles and event.get("accepted"):
                        self.notify()  # the registry says what to serve; the event says: look now

    # -- the HTTP server ---------------------------------------------------------------------
    async def _start_http(self) -> None:
        from aiohttp import web

        from consumers.serving.app import make_app

        self._runner = web.AppRunner(make_app(self.models), access_log=None)
        await self._runner.setup()
        sock = socket.create_server((self.host, self.port), reuse_port=False)
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def start(self) -> "ServeProcess":
        """Load what each profile serves, then answer requests (in a thread); returns once it listens."""
        self.models.refresh()
        self._threads.append(threading.Thread(target=self._follow_registries, name="serve-follow", daemon=True))
        if self.kafka is not None:
            self._threads.append(threading.Thread(target=self._follow_events, name="serve-events", daemon=True))
        self._loop = asyncio.new_event_loop()
        failed: list[BaseException] = []

        def run_http() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_http())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller of start()
                failed.append(exc)
                self.ready.set()
                return
            self.ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())

        self._threads.append(threading.Thread(target=run_http, name="serve-http", daemon=True))
        for thread in self._threads:
            thread.start()
        self.ready.wait()
        if failed:
            self.stop()
            raise failed[0]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(timeout=10)
        self.models.engine.close()

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
