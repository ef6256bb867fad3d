"""The outbox relay: what a worker must publish once the states that hold it are durable, and what
it hears back from the broker. Drift alerts and ModelUpdated events wait in each profile's saved
outbox; dead letters wait in memory beside the offset they cover; operational notices (a checkpoint
that could not be written) go out at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.codec import drift_alert_event, model_updated_event

__all__ = ["Outgoing", "OutboxRelay"]

_MAKE_EVENT = {"drift-alerts": drift_alert_event, "model-updated": model_updated_event}





@dataclass
class Outgoing:
    """What to publish: ``(topic kind, key, map, marker)``; the marker goes back to :meth:`IngestCore.sent`.

    >>> Outgoing([("dead-letters", b"ann", {"reason": "bad"}, ("dead-letter", "d1"))]).messages[0][0]
    'dead-letters'"""

    messages: list[tuple[str, bytes | None, dict[str, Any], Any]] = field(default_factory=list)


class OutboxRelay:
    """The relay part of :class:`streams.ingest.IngestCore` (its learners, dirty set, notices and dead
    letters are the core's)."""

    def take_notices(self) -> Outgoing:
        """Operational notices (a checkpoint that could not be written): published at once, durable or not."""
        out = Outgoing([(kind, key, event, None) for kind, key, event in self.notices])
        self.notices = []
        return out

    def outgoing(self) -> Outgoing:
        """What must be published now: the durable outboxes of every profile, and the dead letters."""
        out = Outgoing()
        for profile, learner in self.learners.items():
            if profile in self.dirty:
                continue  # not durable yet: published after the next flush
            for entry in learner.outbox.pending():
                out.messages.append((entry["kind"], profile.encode(), _MAKE_EVENT[entry["kind"]](entry["event"]),
                                     (profile, entry["event"]["id"])))
        for key, letter in self.dead_letters:
            out.messages.append(("dead-letters", key, letter, ("dead-letter", letter["id"])))
        return out

    def sent(self, markers: list[Any]) -> None:
        """A broker acknowledged these messages: take them out of the outboxes (and the dead-letter queue)."""
        by_profile: dict[str, list[str]] = {}
        letters = set()
        for marker in markers:
            if marker is None:
                continue
            owner, event_id = marker
            if owner == "dead-letter":
                letters.add(event_id)
            else:
                by_profile.setdefault(owner, []).append(event_id)
        for profile, ids in by_profile.items():
            learner = self.learners.get(profile)
            if learner is not None and learner.outbox.mark_sent(ids):
                self.dirty.add(profile)  # saved at the next flush; a crash before resends (same ids)
        if letters:
            self.dead_letters = [(k, letter) for k, letter in self.dead_letters if letter["id"] not in letters]
