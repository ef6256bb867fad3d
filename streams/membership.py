"""A stopped worker's place in its consumer group.

A worker without ``worker.instance_id`` leaves its group as its consumer closes, and the group
rebalances at once. A *static* member (KIP-345) does not: Kafka keeps its place, and its partitions,
until its session times out, so that a worker restarted within that time takes them back without a
rebalance. That is right for a restart and wrong for a worker stopped for good (scaled down): its
profiles would wait a session timeout for a new owner. So a static member that stops removes itself
from the group (LeaveGroup by its ``group.instance.id``, the request Kafka's admin tools use) once its
consumer is closed, unless ``worker.leave_group_on_stop`` is false.
"""

from __future__ import annotations

from dataclasses import replace

__all__ = ["leave_group"]


def leave_group(kafka, group: str, instance_id: str, timeout_s: float) -> str:
    """Remove the static member ``instance_id`` from ``group``; say how it went, in one line.

    ``kafka`` is a :class:`streams.settings.KafkaConfig`; each request waits at most ``timeout_s``. Never
    raises: a member that could not be removed leaves when its session times out, as a killed one does.
    """
    from kafka.admin import MemberToRemove
    from kafka.errors import KafkaError

    from contracts.topics import BrokerUnavailable
    from streams.topics import admin_client

    if not kafka.listening():  # the broker is gone: a client would wait out its whole bootstrap for nothing
        return f"left the group only when its session times out: nothing listens at {kafka.bootstrap}"
    try:
        admin = admin_client(replace(kafka, request_timeout_s=timeout_s))
    except BrokerUnavailable as exc:
        return f"left the group only when its session times out: {exc}"
    try:
        results = admin.remove_group_members(group, [MemberToRemove(group_instance_id=instance_id)])
        errors = [error.__name__ for error in results.values() if error.__name__ != "NoError"]
        if errors:
            return f"left the group only when its session times out: the broker answered {', '.join(errors)}"
        return f"left group {group} (static member {instance_id}): its partitions move at once"
    except (KafkaError, OSError, ValueError) as exc:
        return f"left the group only when its session times out: {type(exc).__name__}: {exc}"
    finally:
        admin.close()
