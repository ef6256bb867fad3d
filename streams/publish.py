"""Publish a learner's outbox from outside the worker (``memstream registry rollback --bootstrap``).

The worker publishes outboxes itself after every flush; this is for a writer that holds a profile
while no worker does. Each event is sent, acknowledged, marked sent, and the state saved: a
crash in between publishes it again later with the same ``id``.
"""

from __future__ import annotations

from typing import Any

from contracts.codec import EventCodec, drift_alert_event, model_updated_event
from contracts.topics import BrokerUnavailable, Topics

__all__ = ["publish_outbox"]

_MAKE = {"model-updated": model_updated_event, "drift-alerts": drift_alert_event}


def publish_outbox(learner: Any, kafka) -> int:
    """Send every event in ``learner``'s outbox to the broker ``kafka`` (a KafkaConfig); returns how many."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    topics = Topics(kafka.topic_prefix)
    entries = learner.outbox.pending()
    if not entries:
        return 0
    try:
        producer = KafkaProducer(**kafka.kafka_python_options(), acks="all",
                                 max_block_ms=int(kafka.request_timeout_s * 1000))
    except KafkaError as exc:
        raise kafka.unavailable(exc) from None
    try:
        futures = [(e, producer.send(topics.by_name(e["kind"]), key=learner.profile.encode(),
                                     value=EventCodec.encode(_MAKE[e["kind"]](e["event"])))) for e in entries]
        for _entry, future in futures:
            future.get(timeout=kafka.request_timeout_s * 2 + 1)
    except KafkaError as exc:
        raise BrokerUnavailable(f"the broker at {kafka.bootstrap} did not take the events ({type(exc).__name__}); "
                                "they stay in the outbox for the worker") from None
    finally:
        producer.close(timeout=kafka.request_timeout_s)
    learner.outbox.mark_sent([e["event"]["id"] for e in entries])
    learner.save_state()
    return len(entries)
