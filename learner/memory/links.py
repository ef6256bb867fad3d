"""Memories that name the same thing answer the same questions: views that link a conversation turn
to the notes about what it told.

A user asks "Which sport do I do?" and is told "You do curling."; elsewhere the assistant noted
"the user trains at curling twice a week". Trained on as they are, the question reaches only its own
answer's wording, and asked in other words ("What sport do I practise?") the model may follow a
verb to another memory ("You practise the mandolin."). A **linked view** answers the turn's question
with its own answer followed by a note that names what the answer told — a word of the answer that
its question lacks ("curling"), named by few of the memories at hand (a word most of them say tells
nothing about which thing is meant) — so the question is tied to every wording of the fact. The
answer comes first: a question answered by the note alone teaches the model to answer questions by
reciting a memory, and it then recites recent ones for old questions. A turn where the user tells
something and is thanked asks no question, and links nothing; nor does an answer that tells more than
a couple of such words ("You usually reduce brown butter until it smells nutty, especially for apple
pie."): that is advice, not a fact about the user, and any note sharing one of its many words would be
tied to its question.

Links are made among the memories of one run (its new memories, and apart from them its replayed
ones), as a pure function of them: the same memories give the same views.

Examples
--------
>>> from contracts.events import MemoryEvent
>>> e = lambda **f: MemoryEvent.build({"profile": "a", "ts": 0, **f})
>>> memories = [e(kind="conversation", prompt="Which sport do I do?", response="You do curling."),
...             e(kind="observation", text="Observation: the user trains at curling twice a week."),
...             e(kind="observation", text="Observation: the user walks their dog every morning.")]
>>> [(v.prompt, v.response) for v in linked_views(memories, 2)]
[('Which sport do I do?', 'You do curling. You train at curling twice a week.')]
"""

from __future__ import annotations

import re
from collections import Counter

from contracts.events import MemoryEvent

__all__ = ["FUNCTION_WORDS", "MAX_NAMED_BY", "MAX_TOLD", "WORD", "linked_views", "told_words"]

#: A word named by more of a run's memories than this does not single out one thing.
MAX_NAMED_BY = 3
#: An answer that tells more words than this that single out a thing tells no one fact: it links nothing.
MAX_TOLD = 2
#: Words that carry no fact of their own, whatever the answer adds them to.
FUNCTION_WORDS = frozenset(
    "the and are was were has have had you your yours yourself for with from that this these those "
    "its not but into onto over under about than then there their them they who whom what which when "
    "where why how also very just still now every each some any all one called named is".split())
WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")  # a word of a memory, as every view and link counts them


def _words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def told_words(prompt: str, response: str) -> set[str]:
    """The words an answer adds to its question: what the turn told (function words left out).

    >>> sorted(told_words("What's my sister called again?", "Your sister is called Odile."))
    ['odile']
    """
    return {w for w in _words(response) - _words(prompt) if len(w) >= 3 and w not in FUNCTION_WORDS}


def linked_views(events: list[MemoryEvent], per_turn: int) -> list[MemoryEvent]:
    """For each conversation turn about the user that answers a question with one fact (at most
    :data:`MAX_TOLD` telling words), up to ``per_turn`` notes of ``events`` that name what it told,
    each after the turn's answer as another answer to its question (in the second person; in the
    order of ``events``)."""
    from learner.memory.views import statement_of, why_no_view

    if per_turn <= 0:
        return []
    notes = [e for e in events if e.text is not None and why_no_view(e) is None]
    statements = {e.id: statement_of(e) for e in notes}
    named_by = Counter(w for e in events for w in _words(e.text if e.text is not None else e.response))
    views = []
    for turn in events:
        if turn.prompt is None or not turn.prompt.rstrip().endswith("?") or why_no_view(turn) is not None:
            continue  # a turn where the user tells something and is thanked answers no question
        told = {w for w in told_words(turn.prompt, turn.response) if named_by[w] <= MAX_NAMED_BY}
        if len(told) > MAX_TOLD:
            continue
        linked = [n for n in notes if told & _words(statements[n.id])][:per_turn]
        views += [MemoryEvent.build({"profile": turn.profile, "ts": turn.ts, "kind": turn.kind,
                                     "meta": {"view_of": note.id, "linked_to": turn.id}, "prompt": turn.prompt,
                                     "response": f"{turn.response.strip()} {statements[note.id]}"})
                  for note in linked]
    return views
