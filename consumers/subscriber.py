"""Subscribers to what the worker publishes (kafka-python): iterate, or hand each event to a callback.

Examples
--------
>>> describe_event("model-updated", {"profile": "alice", "version": 3, "parent_version": 2, "accepted": True,
...     "trigger": "count", "samples_new": 300, "samples_replay": 100, "duration_s": 12.5, "reason": "probe ok"})
'model-updated alice: v3 (from v2) accepted, trigger count, 300 new + 100 replay, 12.5 s: probe ok'
>>> describe_event("drift-alerts", {"profile": "bo", "detector": "kl", "divergence": 0.41, "threshold": 0.2,
...     "top_features": [{"feature": "recipe", "direction": "rose", "baseline_p": 0.01, "window_p": 0.05}], "action": "consolidate early"})
'drift-alert bo: kl divergence 0.410 > 0.200; top: recipe rose 0.010->0.050; action: consolidate early'
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from contracts.codec import DecodeError, EventCodec
from contracts.topics import Topics

__all__ = ["Subscriber", "ModelUpdateSubscriber", "DriftAlertSubscriber", "DeadLetterSubscriber",
           "describe_event"]


class Subscriber:
    """Read one or more of the worker's output topics.

    Parameters
    ----------
    kafka
        A :class:`streams.settings.KafkaConfig`.
    kinds
        Topic kinds: ``model-updated``, ``drift-alerts``, ``dead-letters``.
    group
        Consumer group (committed offsets: a restart resumes); ``None`` reads without a group.
    from_beginning
        Start at the oldest retained event instead of the newest.
    """

    kinds: tuple[str, ...] = ()

    def __init__(self, kafka, kinds: tuple[str, ...] | list[str] | None = None, group: str | None = None,
                 from_beginning: bool = False):
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        self.topics = Topics(kafka.topic_prefix)
        self.kinds = tuple(kinds or self.kinds)
        self._kind_of = {self.topics.by_name(k): k for k in self.kinds}
        self.codec = EventCodec(max_event_bytes=4 * 1024 * 1024, max_text_chars=1024 * 1024)
        self.errors = 0
        try:
            self._consumer = KafkaConsumer(
                *self._kind_of, **kafka.kafka_python_options(), group_id=group,
                auto_offset_reset="earliest" if from_beginning else "latest",
                enable_auto_commit=group is not None)
        except KafkaError as exc:
            raise kafka.unavailable(exc) from None

    def poll(self, timeout_s: float = 1.0) -> list[tuple[str, dict[str, Any]]]:
        """The events that arrived within ``timeout_s``, as ``(kind, map)``."""
        out = []
        deadline = time.monotonic() + timeout_s
        while True:
            # poll without waiting, then sleep: a broker that answers empty fetches at once
            # (the embedded one) would otherwise keep a waiting poll spinning (see streams.compat)
            batches = self._consumer.poll(timeout_ms=0)
            remaining = deadline - time.monotonic()
            if batches or remaining <= 0:
                break
            time.sleep(min(0.1, remaining))
        for tp, records in batches.items():
            for record in records:
                try:
                    out.append((self._kind_of[tp.topic], self.codec.decode_map(record.value)))
                except DecodeError:
                    self.errors += 1  # not ours to fix: count and go on
        return out

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        while True:
            yield from self.poll()

    def events(self, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Iterate over event maps; stop after ``timeout_s`` without one (None: never)."""
        last = time.monotonic()
        while True:
            got = self.poll(1.0)
            for _kind, event in got:
                yield event
            if got:
                last = time.monotonic()
            elif timeout_s is not None and time.monotonic() - last > timeout_s:
                return

    def run(self, callback: Callable[[str, dict[str, Any]], Any], max_events: int | None = None,
            timeout_s: float | None = None) -> int:
        """Call ``callback(kind, event)`` for each event; returns how many were handled."""
        handled, last = 0, time.monotonic()
        while max_events is None or handled < max_events:
            got = self.poll(1.0)
            for kind, event in got:
                callback(kind, event)
                handled += 1
                if max_events is not None and handled >= max_events:
                    break
            if got:
                last = time.monotonic()
            elif timeout_s is not None and time.monotonic() - last > timeout_s:
                break
        return handled

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ModelUpdateSubscriber(Subscriber):
    """ModelUpdated events (accepted and rejected runs)."""

    kinds = ("model-updated",)


class DriftAlertSubscriber(Subscriber):
    """DriftAlert events."""

    kinds = ("drift-alerts",)


class DeadLetterSubscriber(Subscriber):
    """Dead letters: the original bytes and the reason."""

    kinds = ("dead-letters",)


def describe_event(kind: str, event: dict[str, Any]) -> str:
    """One readable line for an event."""
    if kind == "model-updated":
        verdict = "accepted" if event.get("accepted") else "rejected"
        parent = event.get("parent_version")
        version = f"v{event['version']}" if event.get("version") is not None else "no new version"
        return (f"model-updated {event.get('profile')}: {version} (from {'v' + str(parent) if parent else 'base'}) "
                f"{verdict}, trigger {event.get('trigger')}, {event.get('samples_new')} new + "
                f"{event.get('samples_replay')} replay, {event.get('duration_s')} s: {event.get('reason')}")
    if kind in ("drift-alerts", "drift"):
        top = "; top: " + ", ".join(
            f"{f.get('feature')} {f.get('direction', '')} {format_measure(f.get('baseline_p'))}->{format_measure(f.get('window_p'))}"
            for f in (event.get("top_features") or [])[:3]) if event.get("top_features") else ""
        return (f"drift-alert {event.get('profile')}: {event.get('detector')} divergence "
                f"{format_measure(event.get('divergence'))} > {format_measure(event.get('threshold'))}{top}; "
                f"action: {event.get('action')}")
    if kind == "dead-letters":
        return (f"dead-letter {event.get('topic')}[{event.get('partition')}]@{event.get('offset')}: "
                f"{event.get('reason')}")
    return f"{kind}: {event}"


def format_measure(value: Any) -> str:
    """A measure with three decimals, or ``n/a`` where the event carries none.

    >>> format_measure(0.5), format_measure(None)
    ('0.500', 'n/a')
    """
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
