"""Quality gate: keep trivial memories ("ok", "thanks", "👍") out of training, and say why.

Examples
--------
>>> from contracts.events import MemoryEvent
>>> gate = QualityGate(min_chars=8)
>>> ev = lambda text: MemoryEvent.from_dict({"v": 1, "profile": "a", "ts": 0, "kind": "note", "text": text})
>>> gate.check(ev("ok")), gate.check(ev("Thanks!!")), gate.check(ev("rye 7"))
('acknowledgement only', 'acknowledgement only', 'too short: 4 letters or digits (minimum 8)')
>>> gate.check(ev("Bought rye flour for the starter.")) is None
True
>>> dict(gate.counts)
{'acknowledgement only': 2, 'too short': 1}
"""

from __future__ import annotations

import re
from collections import Counter

from contracts.events import MemoryEvent
from learner.policy.config import QualityConfig

__all__ = ["QualityGate", "ACKNOWLEDGEMENTS", "is_acknowledgement", "letters_or_digits", "plain_words", "said_by_author"]

#: Whole messages that carry no memory worth learning, compared lower-case without punctuation.
ACKNOWLEDGEMENTS = frozenset({
    "ok", "okay", "k", "kk", "thanks", "thank you", "thanks a lot", "thx", "ty", "yes", "no", "yep", "nope",
    "sure", "cool", "great", "nice", "got it", "sounds good", "lol", "hmm", "hi", "hello", "bye", "good night",
    "noted", "alright", "all right", "fine", "perfect", "awesome",
})
_WORDS = re.compile(r"[^\w\s]+", re.UNICODE)


def said_by_author(event: MemoryEvent) -> str:
    """What the memory's author said, which the gate judges: the text, or a conversation turn's response."""
    return event.text if event.text is not None else event.response or ""


def is_acknowledgement(text: str) -> bool:
    """Whether the whole of ``text`` is an acknowledgement (case and punctuation aside).

    >>> is_acknowledgement("Thanks!!"), is_acknowledgement("Thanks for the rye flour")
    (True, False)
    """
    return len(text) <= 40 and " ".join(plain_words(text)) in ACKNOWLEDGEMENTS


def plain_words(text: str) -> list[str]:
    """``text``'s words, lower-case, punctuation dropped.

    >>> plain_words("Thanks, Odile!!")
    ['thanks', 'odile']
    """
    return _WORDS.sub(" ", text.lower()).split()


def letters_or_digits(text: str, enough: int) -> int:
    """How many letters or digits ``text`` holds, counting no further than ``enough``.

    >>> letters_or_digits("rye 7", 8), letters_or_digits("rye flour", 4)
    (4, 4)
    """
    n = 0
    for ch in text:  # stop counting once there are enough: this runs for every event
        n += ch.isalnum()
        if n >= enough:
            break
    return n


class QualityGate:
    """Refuse events whose learnable text is an acknowledgement or has too few letters or digits.

    Parameters
    ----------
    min_chars
        Fewest letters or digits the text (or the response) must hold.
    """

    def __init__(self, min_chars: int = QualityConfig.min_chars):
        self.min_chars = min_chars
        self.counts: Counter[str] = Counter()

    def check(self, event: MemoryEvent) -> str | None:
        """The reason the event fails the gate, or None when it passes (failures are counted)."""
        text = said_by_author(event)
        reason = None
        if is_acknowledgement(text):
            reason = "acknowledgement only"
        else:
            n = letters_or_digits(text, self.min_chars)
            if n < self.min_chars:
                reason = f"too short: {n} letters or digits (minimum {self.min_chars})"
        if reason is not None:
            self.counts[reason.split(":")[0]] += 1
        return reason
