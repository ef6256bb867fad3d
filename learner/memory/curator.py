"""What a profile's memories are like: lengths, acknowledgements and filler, kinds — with warnings.

A model learns from what it is told; a stream of "ok" and one-line notes teaches little however
well it is trained. The curator counts, per profile (kept in the learner state) and per run (in
the run's metrics), how many memories are **short** (at most 40 words), **medium** (41–100) or
**long** (over 100), how many are **acknowledgements** ("ok", "thanks") or **filler** (too few
letters or digits to hold a fact, or nothing but interjections), and of which **kind**
(conversation, observation, reflection, note, …), and warns when:

- more than 60% are short;
- more than 15% are acknowledgements or filler;
- a run has fewer new memories than a time or drift trigger waits for (``scheduler.min_examples``).

Examples
--------
>>> from contracts.events import MemoryEvent
>>> ev = lambda text, kind="note": MemoryEvent.from_dict({"v": 1, "profile": "a", "ts": 0, "kind": kind, "text": text})
>>> counts = MemoryCounts()
>>> for e in [ev("ok"), ev("Odile is my sister and lives in Lyon."), ev("um lol", "reflection")]:
...     counts.observe(e)
>>> report = counts.report()
>>> report["short"], report["acknowledgements"], report["filler"], report["kinds"]
(3, 1, 1, {'note': 2, 'reflection': 1})
>>> report["warnings"]
['3 of 3 memories are short (100% at most 40 words; over 60% teaches little each)', '2 of 3 memories are acknowledgements or filler (67%; over 15% is noise)']
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from contracts.events import MemoryEvent
from learner.policy.quality import is_acknowledgement, letters_or_digits, plain_words, said_by_author

__all__ = ["MemoryCounts", "LENGTH_CLASSES", "curate", "words_of"]

#: Word-count classes: (name, most words in it).
LENGTH_CLASSES = (("short", 40), ("medium", 100), ("long", None))
SHORT_WARNING, NOISE_WARNING = 0.60, 0.15
#: Words that say nothing on their own.
INTERJECTIONS = frozenset({"um", "uh", "erm", "hmm", "hm", "lol", "haha", "hahaha", "ha", "oh", "ah", "wow",
                           "meh", "yeah", "yay", "ugh", "omg", "idk", "brb", "xd"})
MIN_LETTERS = 8


def words_of(event: MemoryEvent) -> list[str]:
    """The words of what the memory says (a conversation turn: its prompt and response)."""
    text = event.text if event.text is not None else f"{event.prompt or ''} {event.response or ''}"
    return text.split()


def _is_filler(said: str) -> bool:
    return letters_or_digits(said, MIN_LETTERS) < MIN_LETTERS \
        or all(w in INTERJECTIONS for w in plain_words(said))


class MemoryCounts:
    """Running counts of a profile's (or a run's) memories; :meth:`report` adds shares and warnings."""

    def __init__(self, counts: dict[str, Any] | None = None):
        counts = counts or {}
        self.total = int(counts.get("total", 0))
        self.lengths = Counter({k: int(v) for k, v in counts.get("lengths", {}).items()})
        self.acknowledgements = int(counts.get("acknowledgements", 0))
        self.filler = int(counts.get("filler", 0))
        self.kinds = Counter({k: int(v) for k, v in counts.get("kinds", {}).items()})

    def observe(self, event: MemoryEvent) -> None:
        self.total += 1
        n = len(words_of(event))
        self.lengths[next(name for name, most in LENGTH_CLASSES if most is None or n <= most)] += 1
        said = said_by_author(event)
        if is_acknowledgement(said):
            self.acknowledgements += 1
        elif _is_filler(said):
            self.filler += 1
        self.kinds[event.kind] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"total": self.total, "lengths": dict(self.lengths), "acknowledgements": self.acknowledgements,
                "filler": self.filler, "kinds": dict(self.kinds)}

    def report(self, min_new: int | None = None) -> dict[str, Any]:
        """Counts, shares and warnings; ``min_new``: warn when there are fewer memories than that
        (a run's new memories against ``scheduler.min_examples``)."""
        n = self.total
        share = (lambda k: round(k / n, 4)) if n else (lambda _k: 0.0)
        out: dict[str, Any] = {"memories": n}
        for name, _ in LENGTH_CLASSES:
            out[name], out[f"{name}_share"] = self.lengths[name], share(self.lengths[name])
        noise = self.acknowledgements + self.filler
        out.update(acknowledgements=self.acknowledgements, filler=self.filler, noise_share=share(noise),
                   kinds=dict(sorted(self.kinds.items())))
        warnings = []
        if n and self.lengths["short"] / n > SHORT_WARNING:
            warnings.append(f"{self.lengths['short']} of {n} memories are short ({self.lengths['short'] / n:.0%} at "
                            f"most 40 words; over {SHORT_WARNING:.0%} teaches little each)")
        if n and noise / n > NOISE_WARNING:
            warnings.append(f"{noise} of {n} memories are acknowledgements or filler ({noise / n:.0%}; over "
                            f"{NOISE_WARNING:.0%} is noise)")
        if min_new is not None and n < min_new:
            warnings.append(f"only {n} new memories for this run (a time or drift trigger waits for {min_new})")
        out["warnings"] = warnings
        return out


def curate(events: Iterable[MemoryEvent], min_new: int | None = None) -> dict[str, Any]:
    """The report of a set of memories (a run's new ones).

    >>> from contracts.events import MemoryEvent
    >>> e = MemoryEvent.from_dict({"v": 1, "profile": "a", "ts": 0, "kind": "note", "text": "Rye flour for the starter."})
    >>> curate([e], min_new=2)["warnings"]
    ['1 of 1 memories are short (100% at most 40 words; over 60% teaches little each)', 'only 1 new memories for this run (a time or drift trigger waits for 2)']
    """
    counts = MemoryCounts()
    for event in events:
        counts.observe(event)
    return counts.report(min_new)
