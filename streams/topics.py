"""Topic names (with their configurable prefix) and creating them when missing.

Examples
--------
>>> t = Topics("memstream.")
>>> t.memory_events, t.dead_letters
('memstream.memory-events', 'memstream.dead-letters')
>>> Topics("acme.").all()
['acme.memory-events', 'acme.model-updated', 'acme.drift-alerts', 'acme.dead-letters']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Topics", "ensure_topics", "topic_id", "BrokerUnavailable"]

TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


class BrokerUnavailable(ConnectionError):
    """No broker answered at the configured address within the timeout."""


@dataclass(frozen=True)
class Topics:
    """The four topics of the event contracts, under one prefix."""

    prefix: str = "memstream."

    def __post_init__(self) -> None:
        if not TOPIC_NAME.fullmatch(self.prefix + "x"):
            raise ValueError(f"topic prefix {self.prefix!r} may only hold letters, digits, '.', '_' and '-'")

    @property
    def memory_events(self) -> str:
        return f"{self.prefix}memory-events"

    @property
    def model_updated(self) -> str:
        return f"{self.prefix}model-updated"

    @property
    def drift_alerts(self) -> str:
        return f"{self.prefix}drift-alerts"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}dead-letters"

    def all(self) -> list[str]:
        return [self.memory_events, self.model_updated, self.drift_alerts, self.dead_letters]

    def by_name(self, name: str) -> str:
        """``model-updated`` → the full topic name."""
        names = {"memory-events": self.memory_events, "model-updated": self.model_updated,
                 "drift-alerts": self.drift_alerts, "drift": self.drift_alerts,
                 "dead-letters": self.dead_letters}
        if name not in names:
            raise ValueError(f"unknown topic {name!r} (known: {', '.join(sorted(names))})")
        return names[name]


def ensure_topics(kafka, topics: Topics | None = None) -> list[str]:
    """Create the topics that are missing, with ``kafka.partitions`` partitions; returns those created.

    ``kafka`` is a :class:`streams.settings.KafkaConfig`. Raises :class:`BrokerUnavailable`
    with the address tried when no broker answers.
    """
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    topics = topics or Topics(kafka.topic_prefix)
    admin = admin_client(kafka)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(name, kafka.partitions, kafka.replication) for name in missing])
            except TopicAlreadyExistsError:  # another worker won the race
                pass
        return missing
    except KafkaError as exc:
        raise BrokerUnavailable(f"broker at {kafka.bootstrap} failed while creating topics: {exc}") from None
    finally:
        admin.close()


def admin_client(kafka):
    """A kafka-python admin client, or :class:`BrokerUnavailable` naming the address tried."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(**kafka.kafka_python_options())
    except KafkaError as exc:
        raise BrokerUnavailable(f"no Kafka broker answered at {kafka.bootstrap} within "
                                f"{kafka.request_timeout_s:g} s ({type(exc).__name__})") from None


def topic_id(kafka, name: str) -> str | None:
    """The broker's id of topic ``name`` (None when the broker does not report topic ids).

    The worker keys its saved offsets by it: a topic deleted and created again (or a broker that
    keeps topics only in memory, restarted) starts its offsets at 0 again, and old offsets must
    not make the worker skip new events.
    """
    from kafka.errors import KafkaError

    admin = admin_client(kafka)
    try:
        found = admin.describe_topics([name])
        return (found[0].get("topic_id") or None) if found else None
    except KafkaError:
        return None
    finally:
        admin.close()
