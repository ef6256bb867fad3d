"""Workarounds for the brokers we run against, each with the measurement that called for it.

Empty fetches. A Kafka broker holds an empty fetch up to ``fetch.max.wait.ms`` before it
answers; noida-db 0.2.3 (the embedded broker) answers at once, so every client that waits for
new messages spins: measured here, an idle kafka-python consumer used 4.75 s of CPU in 5 s
against noida-db and 0.05 s against Tansu, and the idle faust worker about 80% of a core.
``throttle_empty_fetches`` makes aiokafka (under faust) pause after an empty fetch; against a
broker that honours the wait it never sleeps, because the wait has already passed.

Partitions with no committed offset. When a rebalance lands while faust's fetcher holds a batch,
faust drops the batch and "seeks back to committed offsets"; aiokafka's ``seek_to_committed``
seeks only partitions whose committed offset is above 0, so a partition that has none keeps the
position *after* the dropped batch and those records are never delivered. Found by the broker
outage test (tests/faults/test_broker_outage.py): the broker stopped while the group's first
offset commit was in flight, the worker rejoined, fetched offsets 0-199 with the flow stopped,
dropped them, and then sat at position 200 with 100 events unread (3 of 3 runs once the test
stopped the broker the moment the state was saved). ``rewind_uncommitted_partitions`` makes that
seek put such partitions where the reset policy says a partition without a commit starts;
re-read events are recognised by the ingest core and not learned twice.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["throttle_empty_fetches", "EMPTY_FETCH_PAUSE_S", "rewind_uncommitted_partitions", "uncommitted"]

EMPTY_FETCH_PAUSE_S = 0.1
_installed = False
_rewind_installed = False


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


def uncommitted(committed: dict) -> list:
    """The partitions in a ``{partition: committed offset}`` map that have nothing committed.

    aiokafka reports "nothing" as ``None``; an offset of 0 means the same position as none.

    >>> uncommitted({"a": None, "b": 0, "c": 7})
    ['a', 'b']
    """
    return [tp for tp, offset in committed.items() if not offset]


def rewind_uncommitted_partitions() -> None:
    """Make faust's seek to committed offsets also move partitions that have none to the place the
    consumer's ``auto_offset_reset`` policy gives them (the beginning, for memstream's worker)."""
    global _rewind_installed
    if _rewind_installed:
        return
    from aiokafka.consumer.fetcher import OffsetResetStrategy
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    async def seek_to_committed_or_reset(consumer):
        committed = await consumer.seek_to_committed()
        missing = uncommitted(committed)
        if missing:
            if consumer._fetcher._default_reset_strategy == OffsetResetStrategy.LATEST:
                await consumer.seek_to_end(*missing)
            else:
                await consumer.seek_to_beginning(*missing)
        return committed

    async def seek_to_committed(self):
        return await self.call_thread(seek_to_committed_or_reset, self._ensure_consumer())

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed
    _rewind_installed = True
