"""Creating the contract topics on a broker when they are missing, and reading their ids.
"""

from __future__ import annotations

from contracts.topics import BrokerUnavailable, Topics

__all__ = ["ensure_topics", "topic_id", "admin_client"]


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
        raise kafka.unavailable(exc) from None


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
