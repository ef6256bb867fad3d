"""Workarounds for the brokers and clients we run against, each with the measurement that called for it.

They replace private internals of aiokafka (``Fetcher._proc_fetch_request``) and faust
(``AIOKafkaConsumerThread.seek_to_committed``). Those are pinned in ``pyproject.toml``
(aiokafka 0.14.0, faust-streaming 0.15.3); :func:`check_patch_points` runs before anything is
patched and refuses, with one line naming what is missing, a version whose internals differ.

Empty fetches. A Kafka broker holds an empty fetch up to ``fetch.max.wait.ms`` before it
answers; noida-db 0.2.3 (the embedded broker) answers at once, so every client that waits for
new messages spins: measured here, an idle kafka-python consumer used 4.75 s of CPU in 5 s
against noida-db and 0.05 s against Tansu, and the idle faust worker about 80% of a core.
``throttle_empty_fetches`` makes aiokafka (under faust) pause after a fetch that brought no
records for its partitions (an error reply counts as empty too: it must not spin either);
against a broker that honours the wait it never sleeps, because the wait has already passed.

A partition just assigned. faust's livelock detector reads each assigned partition's position;
aiokafka asserts that one is set, and right after an assignment it is not yet: on Apache Kafka a
worker that took over partitions crashed so (``assert self._position is not None`` in
``verify_event_path``), found by the two-worker test. ``tolerate_unpositioned_partitions`` makes the
detector pass over such a partition until it has a position.

Partitions with no committed offset. When a rebalance lands while faust's fetcher holds a batch,
faust drops the batch and "seeks back to committed offsets"; aiokafka's ``seek_to_committed``
seeks only partitions whose committed offset is above 0, so a partition that has none (or has
0) keeps the position *after* the dropped batch and those records are never delivered. Found by
the broker outage test (tests/faults/test_broker_outage.py). ``rewind_uncommitted_partitions``
makes that seek put a partition committed at 0 at 0, and one with no commit where the
consumer's reset policy says (which the worker passes in: it is the worker's own setting);
re-read events are recognised by the ingest core and not learned twice.

Where reading starts again. faust seeks every assigned partition to its committed offset when a
rebalance ends, and again when it drops a batch. The worker's offset-gap guard
(:mod:`streams.gaps`) can only tell that the first message after such a seek comes past a missed
one if it knows where the seek put reading: ``report_seeks`` hands the offsets sought to the app
(``app.memstream_on_seek``), and the guard treats a first message past them as a gap.

The last commit on stop. A stopping faust consumer commits what it has acknowledged; aiokafka's
commit looks for the group coordinator until it finds one, so with the broker gone a worker told
to stop (SIGTERM) does not leave: measured, still running 60 s after the signal, its state long
saved (tests/faults/test_broker_outage.py). ``bound_commit_on_stop`` gives that commit a deadline;
past it the worker leaves with those offsets uncommitted, and their events are read again and
skipped by id. Then aiokafka's fetcher, closing, cancels its fetch in flight and awaits it; a fetch
cancelled while it backs off from an unreachable broker raises the cancel into ``close()``, which
kills the consumer's thread and leaves the worker waiting for it: the throttled fetch returns
quietly once the fetcher is closed.
"""

from __future__ import annotations

import asyncio
import inspect
import time

__all__ = ["CompatError", "EMPTY_FETCH_PAUSE_S", "bound_commit_on_stop", "check_patch_points", "report_seeks",
           "rewind_uncommitted_partitions",
           "throttle_empty_fetches", "seek_to_committed_or_reset", "split_committed",
           "tolerate_unpositioned_partitions"]

EMPTY_FETCH_PAUSE_S = 0.1
_installed = False
_rewind_installed = False


class CompatError(RuntimeError):
    """An installed client library whose internals are not the ones memstream patches."""


def check_patch_points() -> None:
    """Check that every attribute the patches replace or read exists with the expected shape."""
    import aiokafka
    from aiokafka.consumer.consumer import AIOKafkaConsumer
    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    problems = []
    proc = getattr(Fetcher, "_proc_fetch_request", None)
    if proc is None or not inspect.iscoroutinefunction(proc) or \
            list(inspect.signature(proc).parameters) != ["self", "assignment", "node_id", "request"]:
        problems.append("aiokafka Fetcher._proc_fetch_request(self, assignment, node_id, request)")
    if "_records" not in Fetcher.__init__.__code__.co_names:
        problems.append("aiokafka Fetcher._records")
    for name in ("seek_to_committed", "seek_to_beginning", "seek_to_end", "seek"):
        if not callable(getattr(AIOKafkaConsumer, name, None)):
            problems.append(f"aiokafka AIOKafkaConsumer.{name}")
    for name in ("seek_to_committed", "call_thread", "_ensure_consumer"):
        if not callable(getattr(AIOKafkaConsumerThread, name, None)):
            problems.append(f"faust AIOKafkaConsumerThread.{name}")
    if not inspect.iscoroutinefunction(getattr(ThreadDelegateConsumer, "seek_to_committed", None)):
        problems.append("faust ThreadDelegateConsumer.seek_to_committed")
    if not inspect.iscoroutinefunction(getattr(Consumer, "on_stop", None)):
        problems.append("faust Consumer.on_stop")
    if problems:
        raise CompatError(f"memstream patches aiokafka 0.14.0 / faust-streaming 0.15.3 internals, and the installed "
                          f"aiokafka {aiokafka.__version__} lacks {', '.join(problems)}: install the versions "
                          "pyproject.toml pins")


def records_arrived(records: dict, request) -> bool:
    """Whether a fetch left records buffered for any partition it asked for.

    >>> from types import SimpleNamespace
    >>> from aiokafka.structs import TopicPartition
    >>> request = SimpleNamespace(topics=[("t", [(0, 5, 1000), (1, 7, 1000)])])
    >>> records_arrived({TopicPartition("t", 1): object()}, request), records_arrived({}, request)
    (True, False)
    """
    from aiokafka.structs import TopicPartition

    return any(TopicPartition(topic, partition) in records
               for topic, partitions in request.topics for partition, *_ in partitions)


def throttle_empty_fetches(pause_s: float = EMPTY_FETCH_PAUSE_S) -> None:
    """Make aiokafka's fetcher wait at least ``pause_s`` after a fetch that brought no records."""
    global _installed
    if _installed:
        return
    check_patch_points()
    from aiokafka.consumer.fetcher import Fetcher

    original = Fetcher._proc_fetch_request

    async def proc_fetch_request(self, assignment, node_id, request):
        started = time.monotonic()
        try:
            result = await original(self, assignment, node_id, request)
        except asyncio.CancelledError:
            if getattr(self, "_closed", False):  # close() awaits this task: a cancel raised here kills the thread
                return False
            raise
        if not records_arrived(self._records, request):
            remaining = pause_s - (time.monotonic() - started)
            if remaining > 0:
                try:
                    await asyncio.sleep(remaining)
                except asyncio.CancelledError:
                    return result  # closing: the original returns quietly when cancelled too
        return result

    Fetcher._proc_fetch_request = proc_fetch_request
    _installed = True


def split_committed(committed: dict) -> tuple[list, list]:
    """The partitions of a ``{partition: committed offset}`` map that aiokafka's seek left alone: those
    committed at 0 (to seek to 0), and those with no commit at all (``None``: the reset policy).

    >>> split_committed({"a": None, "b": 0, "c": 7})
    (['b'], ['a'])
    """
    at_zero = [tp for tp, offset in committed.items() if offset == 0]
    missing = [tp for tp, offset in committed.items() if offset is None]
    return at_zero, missing


async def seek_to_committed_or_reset(consumer, reset: str) -> dict:
    """aiokafka's ``seek_to_committed``, then the partitions it left alone: 0 to 0, none by ``reset``."""
    committed = await consumer.seek_to_committed()
    at_zero, missing = split_committed(committed)
    for tp in at_zero:
        consumer.seek(tp, 0)
    if missing:
        await (consumer.seek_to_end if reset == "latest" else consumer.seek_to_beginning)(*missing)
    return committed


def rewind_uncommitted_partitions(reset: str = "earliest") -> None:
    """Make faust's seek to committed offsets also move the partitions aiokafka leaves alone (see the
    module docstring); ``reset`` is the consumer's ``auto_offset_reset`` (``earliest`` or ``latest``)."""
    global _rewind_installed
    if reset not in ("earliest", "latest"):
        raise ValueError(f"reset must be 'earliest' or 'latest', got {reset!r}")
    if _rewind_installed:
        return
    check_patch_points()
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    async def seek_to_committed(self):
        return await self.call_thread(seek_to_committed_or_reset, self._ensure_consumer(), reset)

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed
    _rewind_installed = True


def _wrap_once(owner, name: str, wrap) -> None:
    """Replace ``owner.name`` by ``wrap(original)``, unless it is already replaced."""
    original = getattr(owner, name)
    if getattr(original, "memstream_patched", False):
        return
    replacement = wrap(original)
    replacement.memstream_patched = True
    setattr(owner, name, replacement)


def tolerate_unpositioned_partitions() -> None:
    """Let faust's livelock detector skip a partition whose position is not fetched yet (see above)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    def wrap(original):
        def verify_event_path(self, now, tp):
            try:
                return original(self, now, tp)
            except AssertionError:  # aiokafka: "assert self._position is not None" just after an assignment
                return None
        return verify_event_path

    _wrap_once(AIOKafkaConsumerThread, "verify_event_path", wrap)


def bound_commit_on_stop(seconds: float) -> None:
    """Let a stopping faust consumer spend at most ``seconds`` on its last commit (see the module docstring)."""
    check_patch_points()
    from faust.transport.consumer import Consumer

    def wrap(original):
        async def on_stop(self):
            started = time.monotonic()
            try:
                await asyncio.wait_for(original(self), seconds)
            except asyncio.TimeoutError:
                pass
            if time.monotonic() - started >= seconds:  # a commit that swallows the cancel ends the wait as well
                self.log.warning("last commit not done in %g s (broker unreachable?): leaving without it; "
                                 "its events are read again and skipped", seconds)
        return on_stop

    _wrap_once(Consumer, "on_stop", wrap)


def report_seeks() -> None:
    """After faust's consumer seeks its partitions to their committed offsets, call its app's
    ``memstream_on_seek({TP: offset or None})`` when it has one (None: no commit, read by the reset policy)."""
    check_patch_points()
    from faust.transport.consumer import ThreadDelegateConsumer

    def wrap(original):
        async def seek_to_committed(self):
            committed = await original(self)
            hook = getattr(self.app, "memstream_on_seek", None)
            if hook is not None:
                hook(dict(committed))
            return committed
        return seek_to_committed

    _wrap_once(ThreadDelegateConsumer, "seek_to_committed", wrap)
