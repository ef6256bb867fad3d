"""Workarounds for the brokers we run against, each with the measurement that called for it.

Empty fetches. A Kafka broker holds an empty fetch up to ``fetch.max.wait.ms`` before it
answers; noida-db 0.2.3 (the embedded broker) answers at once, so every client that waits for
new messages spins: measured here, an idle kafka-python consumer used 4.75 s of CPU in 5 s
against noida-db and 0.05 s against Tansu, and the idle faust worker about 80% of a core.
``throttle_empty_fetches`` makes aiokafka (under faust) pause after an empty fetch; against a
broker that honours the wait it never sleeps, because the wait has already passed.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["throttle_empty_fetches", "EMPTY_FETCH_PAUSE_S"]

EMPTY_FETCH_PAUSE_S = 0.1
_installed = False


def throttle_empty_fetches(pause_s: float = EMPTY_FETCH_PAUSE_S) -> None:
    """Make aiokafka's fetcher wait at least ``pause_s`` between fetches that returned nothing."""
    global _installed
    if _installed:
        return
    from aiokafka.consumer.fetcher import Fetcher

    original = Fetcher._proc_fetch_request

    async def proc_fetch_request(self, assignment, node_id, request):
        started = time.monotonic()
        got_records = await original(self, assignment, node_id, request)
        if not got_records:
            remaining = pause_s - (time.monotonic() - started)
            if remaining > 0:
                try:
                    await asyncio.sleep(remaining)
                except asyncio.CancelledError:
                    return got_records  # closing: the original returns quietly when cancelled too
        return got_records

    Fetcher._proc_fetch_request = proc_fetch_request
    _installed = True
