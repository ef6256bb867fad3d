"""``MemoryProducer``: publish memory events to Kafka (kafka-python), acknowledged or a clear error.

Examples
--------
Building an event needs no broker (the id is a content hash, so publishing the same memory
twice is idempotent downstream):

>>> a = build_event({"profile": "alice", "ts": 1.0, "kind": "note", "text": "tea at five"})
>>> b = build_event({"profile": "alice", "ts": 1.0, "kind": "note", "text": "tea at five"})
>>> a.id == b.id, a.profile
(True, 'alice')
"""

from __future__ import annotations

from typing import Any, Iterable

from contracts.events import MemoryEvent
from contracts.codec import EventCodec
from contracts.topics import Topics

__all__ = ["MemoryProducer", "PublishError", "build_event"]


class PublishError(ConnectionError):
    """The broker did not acknowledge an event (the message says which and why)."""


def build_event(fields: dict[str, Any] | MemoryEvent, now: float | None = None) -> MemoryEvent:
    """A validated :class:`MemoryEvent` from a map (``v``, ``ts`` and ``id`` filled in when missing: the
    same rule as every entry point, :meth:`contracts.events.MemoryEvent.build`)."""
    return MemoryEvent.build(fields, now)


class MemoryProducer:
    """Publish memory events, keyed by profile.

    Parameters
    ----------
    kafka
        A :class:`streams.settings.KafkaConfig` (address, prefix, security).
    linger_ms
        How long the client waits to fill a batch.
    max_event_bytes
        Largest encoded event sent (bigger ones raise before anything is sent).
    """

    def __init__(self, kafka, linger_ms: int = 5, max_event_bytes: int = 65536, max_text_chars: int = 16000):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.topics = Topics(kafka.topic_prefix)
        self.codec = EventCodec(max_event_bytes, max_text_chars)
        self.timeout_s = kafka.request_timeout_s
        self._bootstrap = kafka.bootstrap
        try:
            self._producer = KafkaProducer(
                **kafka.kafka_python_options(), acks="all", linger_ms=linger_ms,
                max_block_ms=int(kafka.request_timeout_s * 1000),
                delivery_timeout_ms=int(kafka.request_timeout_s * 2000) + linger_ms,
            )  # memory stays bounded because publish_many waits for every ack of its batch before returning
        except KafkaError as exc:
            raise kafka.unavailable(exc) from None

    def publish(self, event: dict[str, Any] | MemoryEvent) -> MemoryEvent:
        """Publish one event; returns once the broker acknowledged it, or raises :class:`PublishError`."""
        sent = self.publish_many([event])
        return sent[0]

    def publish_many(self, events: Iterable[dict[str, Any] | MemoryEvent]) -> list[MemoryEvent]:
        """Publish a batch (sent together); returns once every event is acknowledged, else raises."""
        pending = []
        for fields in events:
            event = build_event(fields)
            pending.append((event, self._send(event)))
        for event, future in pending:
            self._wait(event, future)
        return [event for event, _ in pending]

    def _send(self, event: MemoryEvent):
        from kafka.errors import KafkaError

        try:
            return self._producer.send(self.topics.memory_events, key=event.profile.encode("utf-8"),
                                       value=self.codec.encode_memory(event))
        except KafkaError as exc:
            raise PublishError(f"event {event.id} not sent to {self._bootstrap}: {type(exc).__name__}: {exc}") \
                from None

    def _wait(self, event: MemoryEvent, future) -> None:
        from kafka.errors import KafkaError

        try:
            future.get(timeout=self.timeout_s * 2 + 1)
        except KafkaError as exc:
            raise PublishError(f"event {event.id} not acknowledged by {self._bootstrap}: "
                               f"{type(exc).__name__}: {exc}") from None

    def flush(self) -> None:
        self._producer.flush(timeout=self.timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=self.timeout_s)

    def __enter__(self) -> "MemoryProducer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
