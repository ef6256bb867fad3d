"""Replay that covers the most things: old memories chosen so that each tells something the others do not.

A run replays a fraction of the old memories, and a fact told three times (a conversation turn, an
observation, a reflection) is kept by replaying any one of them. A random draw replays some facts
twice and others not at all; a fact not replayed is the one the run overwrites. :func:`widest_cover`
picks one memory at a time, the one whose words the memories already picked cover least, each word
weighted by how rarely the old memories use it — a name, a place, a value ("Tamsin", "Ghent") singles
out one fact; "reflection" or "often" single out none — with words compared by their first
:data:`STEM_LETTERS` letters ("practise", "practising"). A second wording of a thing adds little that is
new, so a memory about another thing is taken first (on the recall benchmark's two people, one memory of
every fact of a phase before a second of any: ``tests/test_replay_cover.py``).

Given the same memories and generator state it picks the same ones.

Examples
--------
>>> import random
>>> from contracts.events import MemoryEvent
>>> note = lambda text: MemoryEvent.build({"profile": "a", "ts": 0, "kind": "note", "text": text})
>>> old = [note("The user's sister is Odile."), note("Observation: the user's sister is called Odile."),
...        note("Reflection: Odile, the user's sister, phoned."), note("The user walks their dog Pixel."),
...        note("The user grew up in Ghent.")]
>>> sorted(e.text for e in widest_cover(old, 3, random.Random(0)))
["Reflection: Odile, the user's sister, phoned.", 'The user grew up in Ghent.', 'The user walks their dog Pixel.']
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter

from contracts.events import MemoryEvent
from learner.memory.links import FUNCTION_WORDS, WORD

__all__ = ["STEM_LETTERS", "stems", "widest_cover"]

#: Letters of a word compared: "practise", "practises" and "practising" are one word here.
STEM_LETTERS = 6


def stems(event: MemoryEvent) -> set[str]:
    """The words of ``event`` (its question, if any, and what it says to the user, without a label such as
    "Observation:") that may carry a fact, cut to their stems.

    >>> sorted(stems(MemoryEvent.build({"profile": "a", "ts": 0, "kind": "conversation",
    ...                                   "prompt": "Which sport do I do?", "response": "You're at Lena's curling."})))
    ['curlin', 'lena', 'sport']
    """
    from learner.memory.views import statement_of

    try:
        told = statement_of(event)
    except Exception:  # a memory whose statement cannot be made is compared by its own words: the plan never fails
        told = event.text if event.text is not None else event.response
    said = " ".join(part for part in (event.prompt, told) if part)
    words = (w.lower().removesuffix("'s") for w in WORD.findall(said))  # "Felix's" is Felix; "I'm" is no thing
    return {w[:STEM_LETTERS] for w in words if len(w) >= 3 and "'" not in w and w not in FUNCTION_WORDS}


def widest_cover(old: list[MemoryEvent], k: int, rng: random.Random) -> list[MemoryEvent]:
    """``k`` memories of ``old`` (all of them if fewer), each in turn the one that adds the most weight of
    words not yet covered; ties go to the first in a seeded shuffle of ``old`` (drawn from ``rng``).

    What a memory adds only shrinks as others are taken, so a gain computed earlier bounds it: each
    turn recomputes only the best-bounded memory until one stays on top ("lazy greedy", Minoux 1978),
    which picks what the plain greedy pass picks in far fewer sums (a full reservoir stays well under a
    second)."""
    order = list(old)
    rng.shuffle(order)
    words = [stems(e) for e in order]
    named_by = Counter(s for each in words for s in each)
    weight = {s: math.log((len(order) + 1) / n) for s, n in named_by.items()}
    covered: set[str] = set()

    def gain(i: int) -> float:  # fsum: the same total in any order of the set, so no tie depends on the hash seed
        return math.fsum(weight[s] for s in words[i] - covered)

    bounds = [(-gain(i), i) for i in range(len(order))]
    heapq.heapify(bounds)
    chosen: list[int] = []
    while bounds and len(chosen) < k:
        _, i = heapq.heappop(bounds)
        fresh = (-gain(i), i)
        if bounds and fresh > bounds[0]:  # another may add more now: bound this one by what it adds today
            heapq.heappush(bounds, fresh)
            continue
        chosen.append(i)
        covered |= words[i]
    return [order[i] for i in chosen]
