"""One user of the worker's ingest core at a time, and its long work off the event loop.

Tasks on the event loop (the ingest agent, the timer, rebalance callbacks) take turns with the core.
Short work runs on the loop (timed: ``memstream_event_loop_held_seconds``, a hold over
``worker.loop_hold_warn_s`` logged). Work that writes files — state saves, version commits, taking
over and handing back partitions — runs in a thread while its task holds the core: ingest waits for
it, the loop does not, so heartbeats, timers and publishing go on (``memstream_core_work_seconds``).
A thread holds the core until it returns, even when the task that started it was cancelled.

>>> import asyncio
>>> guard = CoreGuard(log=print)
>>> asyncio.run(guard.off_loop("state save", lambda: 2 + 3))
5
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Callable, TypeVar

__all__ = ["CoreGuard"]

T = TypeVar("T")


class CoreGuard:
    """Turns at the core for the tasks of one event loop (see the module docstring).

    Parameters
    ----------
    metrics
        A :class:`streams.metrics.WorkerMetrics` (None: nothing recorded).
    warn_s
        A hold of the loop longer than this is logged.
    log
        Where that line goes.
    """

    def __init__(self, metrics=None, warn_s: float = 0.1, log: Callable[[str], None] = lambda _m: None):
        self.metrics, self.warn_s, self.log = metrics, warn_s, log
        self._turn = asyncio.Lock()  # whose turn it is: tasks queue here
        self._held = threading.Lock()  # held by whoever uses the core, a thread included

    @contextlib.asynccontextmanager
    async def using(self):
        """Hold the core for work on the event loop (waits its turn; never beside a thread's work)."""
        async with self._turn:
            with self._held:
                yield

    async def on_loop(self, part: str, call: Callable[[], T]) -> T:
        """Run ``call`` (short work) on the event loop, holding the core, timed."""
        async with self.using():
            started = time.perf_counter()
            try:
                return call()
            finally:
                held = time.perf_counter() - started
                if self.metrics is not None:
                    self.metrics.loop_held.labels(part=part).observe(held)
                if held > self.warn_s:
                    self.log(f"event loop held {held:.2f} s by {part}")

    async def off_loop(self, part: str, call: Callable[[], T]) -> T:
        """Run ``call`` (work that writes files) in a thread, holding the core, timed."""

        def held_call() -> T:
            with self._held:
                return call()

        async with self._turn:
            started = time.perf_counter()
            try:
                return await asyncio.to_thread(held_call)
            finally:
                if self.metrics is not None:
                    self.metrics.core_work.labels(part=part).observe(time.perf_counter() - started)
