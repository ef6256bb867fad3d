"""The dedupe window: the ids of the last events a profile learned, so a re-published event is
not learned twice."""

from __future__ import annotations

from typing import Any

from learner.memory.config import ReplayConfig

__all__ = ["SeenIds"]


class SeenIds:
    """The last ``capacity`` event ids, for dropping re-published events (bounded memory).

    >>> seen = SeenIds(capacity=2)
    >>> [seen.add(i) for i in ["a", "b", "a", "c", "a"]]
    [True, True, False, True, True]
    >>> "b" in seen, "c" in seen
    (False, True)
    """

    def __init__(self, capacity: int = ReplayConfig.dedupe_window):
        if not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be a non-negative integer, got {capacity!r}")
        self.capacity = capacity
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest id comes first

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False when it was already among the last ``capacity`` ids."""
        if event_id in self._ids:
            return False
        if self.capacity == 0:
            return True
        if len(self._ids) >= self.capacity:
            del self._ids[next(iter(self._ids))]
        self._ids[event_id] = None
        return True

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def snapshot(self) -> dict[str, Any]:
        return {"kind": "seen-ids", "capacity": self.capacity, "ids": list(self._ids)}

    @classmethod
    def restore(cls, data: dict[str, Any], capacity: int | None = None) -> "SeenIds":
        if data.get("kind") != "seen-ids":
            raise ValueError(f"not a seen-ids snapshot (kind={data.get('kind')!r})")
        seen = cls(data["capacity"] if capacity is None else capacity)
        for event_id in data["ids"][-seen.capacity:] if seen.capacity else []:
            seen.add(str(event_id))
        return seen
