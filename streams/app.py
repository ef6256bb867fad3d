"""The faust app: a few declarations and a thin loop around :class:`streams.ingest.IngestCore`.

One agent reads ``memory-events`` with manual acks; a timer makes the learner states durable,
publishes what they hold to publish (outboxes, dead letters) and waits for the broker, and only
then acks the offsets they cover — per partition, only a prefix in which no message is parked
(faust commits acked offsets); it also starts due consolidations in the trainer process and
records those that finished (in a task of its own, beside the timer: a commit takes seconds). Durable
state lives in the state directory, not in faust tables.

The core is used by one task at a time; what writes files runs in a thread meanwhile, so the event
loop stays free during a commit (:mod:`streams.core_guard`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict, deque
from pathlib import Path
from typing import Callable

import faust
from faust.types import TP

from contracts.codec import EventCodec
from learner.failpoints import failpoint
from streams.ingest import IngestCore, Outgoing, StateNotSaved
from streams.core_guard import CoreGuard
from streams.metrics import WorkerMetrics
from streams.gaps import APPLY, IGNORE, OffsetGapGuard, ask_again_for_overdue_rereads
from streams.rebalance import RebalanceTimer, assignment_line
from streams.run_pool import RunPool, threads_per_run
from contracts.topics import Topics

__all__ = ["build_app", "Worker"]

logger = logging.getLogger("memstream.worker")


class Worker:
    """The pieces of one running worker: the faust app, the core, the metrics."""

    def __init__(self, config, state_root: str | Path, log: Callable[[str], None] | None = None,
                 run_threads: int | None = None, topic_ids: dict[str, str] | None = None):
        self.config = config
        self.state_root = Path(state_root)
        self.log = log or logger.warning
        self.topics = Topics(config.kafka.topic_prefix)
        self.metrics = WorkerMetrics()
        # runs share the usable cores: ingest needs little CPU, and training is what takes time
        threads = run_threads or threads_per_run(config.worker.max_parallel_runs)
        self.core = IngestCore(config, self.state_root, RunPool(str(self.state_root),
                                                                config.worker.max_parallel_runs, threads,
                                                                log=self.log),
                               log=self.log, topic_ids=topic_ids)
        self.app = build_app(self)
        # per partition, in offset order: [stream, event, parked?] — acked only as a settled prefix
        self._pending: dict[tuple[str, int], deque[list]] = defaultdict(deque)
        self._flush_lock = asyncio.Lock()
        self.guard = CoreGuard(self.metrics, config.worker.loop_hold_warn_s, self.log)
        self.rebalances = RebalanceTimer(report=self._report_rebalance)
        self.joined = False  # the group has given this worker an assignment (of any partitions)
        self.gaps = OffsetGapGuard()
        self._beat: asyncio.Future | None = None  # the timer's last beat's work, beside the timer

    def _report_rebalance(self, to_assignment: float, to_first_event: float) -> None:
        self.metrics.rebalance(to_assignment, to_first_event)
        self.log(f"rebalance: assigned {to_assignment:.2f} s after the revocation, first event applied "
                 f"{to_first_event:.2f} s after that")

    # -- called from the app -------------------------------------------------------------
    def track(self, stream, event, parked: bool) -> None:
        """Remember a handled message until its offset may be acknowledged."""
        message = event.message
        self._pending[(message.topic, message.partition)].append([stream, event, parked])

    def settle(self, settled: list[tuple[str, int, int]]) -> None:
        """Parked messages that were applied (or dead-lettered) since: their offsets may go."""
        done = set(settled)
        for entries in self._pending.values():
            for entry in entries:
                message = entry[1].message
                if entry[2] and (message.topic, message.partition, message.offset) in done:
                    entry[2] = False

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions taken away: what was not acked is read again by their new owner."""
        for tp in partitions:
            self._pending.pop(tp, None)

    @property
    def pending_count(self) -> int:
        return sum(len(entries) for entries in self._pending.values())

    async def publish(self, out: Outgoing) -> list:
        """Send every message and wait for the broker's acknowledgements; returns the markers of those
        acknowledged (a message that failed stays queued and is sent again at the next flush)."""
        sent = []
        futures = []
        producer = self.app.producer  # straight to the producer: no topic object per message, nothing held back
        for kind, key, data, marker in out.messages:
            futures.append((kind, data, marker, await producer.send(
                self.out_topics[kind], key, EventCodec.encode(data), partition=None, timestamp=None, headers=None)))
        for kind, data, marker, future in futures:
            try:
                await future
            except Exception as exc:  # noqa: BLE001 - the broker refused or timed out: resent next flush
                self.log(f"could not publish a {kind} event ({type(exc).__name__}: {exc}); it stays queued")
                continue
            sent.append(marker)
            self._describe(kind, data)
        return sent

    def _describe(self, kind: str, data: dict) -> None:
        if kind == "model-updated":
            version = data.get("version")
            self.log(f"[{data['profile']}] model-updated: {data.get('action', 'train')} "
                     f"{'v' + str(version) if version is not None else 'base'} ({data.get('status')}: "
                     f"{data.get('reason')})")
        elif kind == "drift-alerts":
            self.log(f"[{data['profile']}] drift alert: divergence {data['divergence']:.3f} > "
                     f"threshold {data['threshold']:.3f}")

    async def flush(self) -> None:
        """Make states durable, publish what they hold to publish, then release the offsets they cover."""
        async with self._flush_lock:
            covered = {tp: len(entries) for tp, entries in self._pending.items()}
            notices = await self.guard.on_loop("notices", self.core.take_notices)
            if notices.messages:
                await self.publish(notices)
            try:
                await self.guard.off_loop("state save", self.core.flush)
            except StateNotSaved as exc:  # not durable: nothing published, nothing acked; retried next tick
                self.metrics.state_write_failures.inc()
                self.log(f"{exc}; offsets held back, retrying every {self.config.worker.flush_interval_s:g} s")
                return
            failpoint("state.saved")
            out = await self.guard.on_loop("outbox", self.core.outgoing)
            if out.messages:
                acknowledged = await self.publish(out)
                await self.guard.on_loop("outbox", lambda: self.core.sent(acknowledged))
                if len(acknowledged) < len(out.messages):
                    return  # something was not acknowledged: the offsets wait with it (resent next flush)
            for tp, n in covered.items():
                entries = self._pending[tp]
                while n and entries and not entries[0][2]:
                    stream, event, _ = entries.popleft()
                    n -= 1
                    await stream.ack(event)

    async def tick(self) -> None:
        """One beat of the timer. Its work (states saved and offsets acked, idle profiles closed, runs started,
        finished runs committed: seconds when the disk or the CPU is slow) runs as a task of its own, and
        beats that come meanwhile return at once, so that a beat never outlasts the timer's interval; an
        error of that work stops the worker at the next beat, as the beat's own would."""
        if self._beat is not None and not self._beat.done():
            return
        await self.committed()  # done: raises what it raised
        self._beat = asyncio.ensure_future(self._beat_work())

    async def committed(self) -> None:
        """Wait until the last beat's work is done, its finished runs committed (raises what it raised)."""
        if self._beat is not None:
            beat, self._beat = self._beat, None
            await beat

    async def _beat_work(self) -> None:
        await ask_again_for_overdue_rereads(self.gaps, lambda t, p, o: self.app.consumer.seek(TP(t, p), o), self.log)
        self.settle(await self.guard.on_loop("parked retry", self.core.retry_parked))
        await self.flush()
        await self.guard.off_loop("idle profiles", self.core.close_idle_profiles)
        await self.guard.on_loop("run start", self.core.start_runs)
        await self.guard.on_loop("metrics",
                           lambda: self.metrics.update(self.core, self.app.consumer, self.topics.memory_events))
        if await self.guard.off_loop("run commit", self.core.finish_runs):
            await self.flush()

    async def stop(self) -> None:
        """Abandon runs in progress (nothing partial is written), save every state, publish and ack what it
        covers; leave this worker's numbers in ``_worker/stats-PID.json`` (benchmarks read them)."""
        try:
            await self.committed()
        except Exception as exc:  # noqa: BLE001 - stopping anyway: what it left uncommitted is rerun
            self.log(f"committing finished runs failed while stopping ({type(exc).__name__}: {exc})")
        await self.flush()
        async with self.guard.using():
            stats = self.core.stats()
            self.core.close()
        from learner.store.storage import atomic_write_json

        (self.state_root / "_worker").mkdir(exist_ok=True)
        atomic_write_json(self.state_root / "_worker" / f"stats-{os.getpid()}.json", stats)


def build_app(worker: Worker) -> faust.App:
    from streams import compat

    config = worker.config
    compat.throttle_empty_fetches()
    compat.rewind_uncommitted_partitions("earliest")  # the same policy as consumer_auto_offset_reset below
    compat.tolerate_unpositioned_partitions()
    compat.bound_commit_on_stop(config.worker.stop_commit_timeout_s)
    compat.report_seeks()
    app = faust.App(
        config.worker.group,
        **config.kafka.faust_options(),
        broker_client_id=config.kafka.client_id,
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=config.kafka.partitions,
        topic_replication_factor=config.kafka.replication,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=config.worker.session_timeout_s,
        broker_heartbeat_interval=max(0.5, config.worker.session_timeout_s / 6),
        # a killed worker's slot in the group is freed after the session timeout; a JoinGroup request
        # may wait up to the rebalance timeout, so the request timeout must outlast it
        broker_rebalance_timeout=config.worker.session_timeout_s,
        broker_request_timeout=max(config.kafka.request_timeout_s, config.worker.session_timeout_s) + 10,
        broker_commit_interval=config.worker.flush_interval_s,
        consumer_group_instance_id=config.worker.instance_id,
        # partitions added to the topic: the group rebalances onto them once the consumer's metadata shows them
        consumer_metadata_max_age_ms=int(config.kafka.metadata_max_age_s * 1000),
        producer_metadata_max_age_ms=int(config.kafka.metadata_max_age_s * 1000),
        stream_wait_empty=False,  # unacked = not yet durable: left uncommitted, replayed and skipped
        producer_acks=-1,
        web_enabled=config.worker.web_port > 0,
        web_port=config.worker.web_port or 6066,
        datadir=str(worker.state_root / "_faust"),
        loghandlers=[],
    )
    topics = worker.topics

    def raw_topic(name: str):
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                         partitions=config.kafka.partitions)

    source = raw_topic(topics.memory_events)
    worker.out_topics = {"dead-letters": topics.dead_letters, "drift-alerts": topics.drift_alerts,
                         "model-updated": topics.model_updated}

    @app.agent(source, name="ingest")
    async def ingest(stream):
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            verdict = worker.gaps.check(message.topic, message.partition, message.offset)
            if verdict == IGNORE:
                continue  # queued past a missed offset: it comes again after the seek
            if verdict != APPLY:
                worker.log(f"{message.topic}[{message.partition}]: offset {verdict[1]} never arrived (next: "
                           f"{message.offset}); reading again from it")
                await app.consumer.seek(TP(message.topic, message.partition), verdict[1])
                continue
            async with worker.guard.using():
                handled = worker.core.handle(message.topic, message.partition, message.offset, message.key,
                                             message.value)
            worker.track(manual, event, handled.parked)
            worker.rebalances.applied(message.partition)
            if worker.pending_count >= config.worker.flush_every:
                await worker.flush()

    @app.timer(config.worker.flush_interval_s)
    async def tick() -> None:
        await worker.tick()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender, revoked, **_kw) -> None:
        worker.rebalances.revoked()
        worker.gaps.forget((tp.topic, tp.partition) for tp in revoked)
        await worker.flush()
        lost = {(tp.topic, tp.partition) for tp in revoked}
        gone = await worker.guard.off_loop("partition release", lambda: worker.core.release_partitions(lost))
        worker.forget(lost)
        if gone:
            worker.log(f"rebalance: released {', '.join(sorted(gone))}")

    app.memstream_on_seek = lambda committed: worker.gaps.sought(committed)  # where reading starts again

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **_kw) -> None:
        mine = {tp.partition for tp in assigned if tp.topic == topics.memory_events}
        worker.joined = True
        worker.rebalances.assigned(mine)
        worker.log(assignment_line(topics.memory_events, mine, lambda: app.consumer.topic_partitions(
            topics.memory_events)))
        adopted = await worker.guard.off_loop("partition adoption",
                                        lambda: worker.core.adopt_partitions(topics.memory_events, mine))
        if adopted:
            worker.log(f"rebalance: took over {', '.join(adopted)}")

    @app.on_before_shutdown.connect
    async def on_shutdown(sender, **_kw) -> None:
        await worker.stop()
        worker.log(f"worker stopped: runs in progress abandoned, state saved; {dict(worker.core.counts)}")

    return app

