"""The outbox: events a learner owes the stream (model-updated, drift alerts), kept in its saved
state until the broker acknowledged them, so none is lost across a crash."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_OUTBOX", "Outbox"]


MAX_OUTBOX = 10_000


class Outbox:
    """Events that must reach the broker, kept with the state until a broker acknowledged them.

    Each entry has a stable ``id`` (also written into the event), so an event resent after a
    crash is recognisably the same and subscribers can drop the copy.

    >>> box = Outbox()
    >>> box.add("model-updated", "ann", {"profile": "ann", "version": 1}, event_id="ann/run/r1")
    'ann/run/r1'
    >>> again = Outbox.restore(box.snapshot())
    >>> [e["event"]["id"] for e in again.pending()], again.mark_sent(["ann/run/r1"]), len(again)
    (['ann/run/r1'], 1, 0)
    """

    def __init__(self, entries: list[dict[str, Any]] | None = None):
        self.entries: list[dict[str, Any]] = list(entries or [])
        self.dropped = 0

    def add(self, kind: str, key: str | None, event: dict[str, Any], event_id: str) -> str:
        """Queue ``event`` for topic ``kind`` under ``key``; returns its id."""
        self.entries.append({"kind": kind, "key": key, "event": {**event, "id": event_id}})
        if len(self.entries) > MAX_OUTBOX:  # nobody publishes (no broker for a long time): keep the newest
            self.entries.pop(0)
            self.dropped += 1
        return event_id

    def pending(self) -> list[dict[str, Any]]:
        return list(self.entries)

    def mark_sent(self, ids: list[str]) -> int:
        """Forget the entries a broker acknowledged; returns how many."""
        gone = set(ids)
        before = len(self.entries)
        self.entries = [e for e in self.entries if e["event"]["id"] not in gone]
        return before - len(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def snapshot(self) -> dict[str, Any]:
        return {"kind": "outbox", "entries": self.entries, "dropped": self.dropped}

    @classmethod
    def restore(cls, data: dict[str, Any] | None) -> "Outbox":
        box = cls((data or {}).get("entries", []))
        box.dropped = int((data or {}).get("dropped", 0))
        return box
