"""Topic names of the event contracts, under a configurable prefix (default ``memstream.``).

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

__all__ = ["BrokerUnavailable", "Topics", "TOPIC_NAME"]

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
