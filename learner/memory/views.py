"""More ways to say one memory: the training views a fact about the user is learned from.

A fact seen in one wording is stored but hard to ask back in other words; the same fact told in
several wordings, and as answers to questions, is what a model can then be asked about. A memory
(a note about the user, an observation, a reflection, or an assistant's answer in a conversation)
gets, before it trains, views made by templates over what it says:

1. **the statement to the user**, in the second person ("Observation: the user's sister is named
   Odile." → "Your sister is named Odile."), as the assistant's answer to a general question about
   the user ("What do you know about me?"), drawn from :data:`RECALL_PROMPTS`;
2. **the statement in the user's own words** ("My sister is named Odile."), as text;
3. **reverse questions**: for each name in it, "What do you know about Odile?" → the statement;
4. more general questions, each answered by the statement.

The views are a pure function of the event (the question drawn is seeded by its id), so a replayed
memory brings the same views and making them again costs microseconds: they need no cache. A memory
that is not about the user (no "the user", "you", "I" or "my" in it), is a single word, or is longer than
:data:`MAX_VIEW_WORDS`, has no view and trains as it is; :func:`with_views` counts why.

Examples
--------
>>> from contracts.events import MemoryEvent
>>> note = MemoryEvent.build({"profile": "a", "ts": 0, "kind": "observation",
...                           "text": "Observation: the user walks their dog Pixel every morning."})
>>> for view in views_of(note, 3):
...     print(view.prompt, "->", view.response) if view.text is None else print(view.text)
What do you remember about my life? -> You walk your dog Pixel every morning.
I walk my dog Pixel every morning.
What do you know about Pixel? -> You walk your dog Pixel every morning.
>>> turn = MemoryEvent.build({"profile": "a", "ts": 0, "kind": "conversation",
...                           "prompt": "Where did I grow up?", "response": "You grew up in Bruges."})
>>> [v.text or v.response for v in views_of(turn, 2)]
['You grew up in Bruges.', 'I grew up in Bruges.']
>>> views_of(MemoryEvent.build({"profile": "a", "ts": 0, "kind": "note", "text": "Rain in Lyon."}), 3)
[]
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Iterable

from contracts.events import MemoryEvent
from learner.memory.links import linked_views

__all__ = ["MAX_VIEW_WORDS", "RECALL_PROMPTS", "first_person", "from_own_words", "second_person", "statement_of",
           "views_of", "why_no_view",
           "with_views"]

#: General questions about the user that a view's statement answers (none names a relation).
RECALL_PROMPTS = (
    "What do you know about me?",
    "What have I told you about myself?",
    "Tell me something you remember about me.",
    "What do you remember about my life?",
    "Remind me of something I told you.",
    "What is one thing you know about me?",
)
MAX_VIEW_WORDS = 80
_LABEL = re.compile(r"^\s*[A-Z][a-z]*(?: [a-z]+){0,3}:\s+")  # "Observation: ", "Noted about the user: "
_ADVERB = r"(?:(?:often|always|never|usually|also|still|really|sometimes|rarely|just|now|\w+ly)\s+)?"
_USER_VERB = re.compile(r"\b([Tt])he user\s+(" + _ADVERB + r")([a-z]+)\b")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b((?:Dr |Mr |Mrs |Ms )?[A-Z][a-z]+(?: [A-Z][a-z]+)*)")
#: "you" as an object (after a preposition or a verb in -s/-ed, or before a stop): "me"; else "I".
_OBJECT_YOU = re.compile(r"(\b(?:to|with|for|about|at|by|from|of|on|in|like|than|\w+s|\w+ed)\s+)you\b(?!')",
                         flags=re.IGNORECASE)
_LAST_YOU = re.compile(r"(?<=\s)you(?=\s*[.,!?;]|$)")
_NOT_NAMES = frozenset({"I", "You", "Your", "My", "The", "A", "An", "There", "Dr", "Mr", "Mrs", "Ms"})


def _plain_verb(verb: str) -> str:
    """The verb after "I"/"you" for one after "the user": walks → walk, carries → carry, has → have."""
    irregular = {"is": "are", "was": "were", "has": "have", "does": "do", "goes": "go"}
    if verb in irregular:
        return irregular[verb]
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if re.search(r"(ss|sh|ch|x|z|o)es$", verb):
        return verb[:-2]
    if verb.endswith("s") and not verb.endswith("ss") and len(verb) > 3:
        return verb[:-1]
    return verb  # past tense, modal: the same for every person


def _swap_words(text: str, table: dict[str, str]) -> str:
    def swap(match: re.Match) -> str:
        word = match.group(0)
        new = table.get(word.lower())
        if new is None:
            return word
        return new[0].upper() + new[1:] if word[0].isupper() else new

    return re.sub(r"\b[A-Za-z']+\b", swap, text)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def _unlabelled(text: str) -> str:
    """Without its label; a label about the user gives its verb a subject ("... the user: rides" → "the user rides").

    >>> _unlabelled("Noted about the user: rides a Batavus.")
    'the user rides a Batavus.'
    """
    label = _LABEL.match(text.strip())
    if label is None:
        return text.strip()
    rest = text.strip()[label.end():]
    if "user" in label.group(0) and re.match(r"[a-z]+s\b", rest) and not re.match(r"(this|his|its|was)\b", rest):
        rest = "the user " + rest
    return rest


def second_person(text: str) -> str:
    """The statement said to the user: "the user's"/"their" → "your", "the user walks" → "you walk".

    >>> second_person("Reflection: the user often compares everything to Ghent, where they grew up.")
    'You often compare everything to Ghent, where you grew up.'
    """
    text = _unlabelled(text)
    text = re.sub(r"\b([Tt])he user's\b", lambda m: "Your" if m.group(1) == "T" else "your", text)
    text = _USER_VERB.sub(lambda m: ("You" if m.group(1) == "T" else "you") + " " + m.group(2)
                          + (_plain_verb(m.group(3)) if m.group(3) != "is" else "are"), text)
    text = re.sub(r"\b([Tt])he user\b", lambda m: "You" if m.group(1) == "T" else "you", text)
    text = _swap_words(text, {"their": "your", "theirs": "yours", "them": "you", "themselves": "yourself",
                              "they": "you", "they're": "you're", "they've": "you've"})
    return _capitalised(text)


def first_person(text: str) -> str:
    """The statement in the user's own words: "Your sister is called Odile." → "My sister is called Odile."

    >>> first_person("Wilhelmina, your neighbour, waters your plants and trusts you.")
    'Wilhelmina, my neighbour, waters my plants and trusts me.'
    >>> first_person("Observation: the user is employed by Velocore.")
    'I am employed by Velocore.'
    """
    text = second_person(text)
    text = re.sub(r"\b([Yy])ou are\b", "I am", text)
    text = re.sub(r"\b([Yy])ou were\b", "I was", text)
    text = _LAST_YOU.sub("me", _OBJECT_YOU.sub(lambda m: m.group(1) + "me", text))
    text = _swap_words(text, {"your": "my", "yours": "mine", "yourself": "myself", "you": "I",
                              "you're": "I'm", "you've": "I've"})
    return _capitalised(text)


def from_own_words(text: str) -> str:
    """A note the user wrote about themself, said back to them: "I am", "my" → "you are", "your".

    >>> from_own_words("My sister Odile visits me when I am ill.")
    'Your sister Odile visits you when you are ill.'
    """
    text = re.sub(r"\bI am\b", "you are", text)
    text = re.sub(r"\bI was\b", "you were", text)
    text = re.sub(r"\bI'm\b", "you're", text)
    text = re.sub(r"\bI\b", "you", text)
    return _capitalised(_swap_words(text, {"my": "your", "mine": "yours", "me": "you", "myself": "yourself"}))


def statement_of(event: MemoryEvent) -> str:
    """What the memory says, to the user: a note's text or a conversation's answer, in the second person.

    A note in the user's own words ("I", "my", no "you") is turned round; an answer is the assistant's
    words already ("I" there is the assistant).
    """
    if event.text is None:
        return second_person(event.response)
    text = event.text
    if not re.search(r"\b(you|your|the user)\b", text, flags=re.IGNORECASE) and re.search(r"\b(I|my|me)\b", text):
        text = from_own_words(_unlabelled(text))
    return second_person(text)


def _about_user(statement: str) -> bool:
    return re.search(r"\b(you|your|yours|yourself)\b", statement, flags=re.IGNORECASE) is not None


def why_no_view(event: MemoryEvent) -> str | None:
    """Why ``event`` gets no view (None when it gets them).

    >>> e = MemoryEvent.build({"profile": "a", "ts": 0, "kind": "note", "text": "ok"})
    >>> why_no_view(e)
    'a single word'
    """
    said = event.response if event.text is None else event.text
    words = len(said.split())
    if words < 2:
        return "a single word"
    if words > MAX_VIEW_WORDS:
        return f"longer than {MAX_VIEW_WORDS} words"
    asks_of_self = event.prompt is not None and re.search(r"\b(I|my|me|we|our|us)\b", event.prompt)
    if not (_about_user(statement_of(event)) or asks_of_self):
        return "not about the user"
    return None


def _names(statement: str) -> list[str]:
    found = []
    for match in _NAME.finditer(statement):
        name = match.group(1)
        if name not in _NOT_NAMES and name not in found:
            found.append(name)
    return found


def views_of(event: MemoryEvent, count: int) -> list[MemoryEvent]:
    """Up to ``count`` views of ``event`` (none when :func:`why_no_view` says why), in a fixed order."""
    if count <= 0 or why_no_view(event) is not None:
        return []
    statement = statement_of(event)
    own_words = first_person(statement)
    prompts = list(RECALL_PROMPTS)
    random.Random(event.id).shuffle(prompts)
    if event.prompt is not None:  # the turn itself already answers its own question
        candidates = [("text", statement), ("text", own_words)]
    else:
        candidates = [(prompts.pop(), statement), ("text", own_words)]
    candidates += [(f"What do you know about {name}?", statement) for name in _names(statement)]
    candidates += [(prompt, statement) for prompt in prompts]
    views = []
    for prompt, words in candidates[:count]:
        fields = {"profile": event.profile, "ts": event.ts, "kind": event.kind,
                  "meta": {"view_of": event.id}}
        fields.update({"text": words} if prompt == "text" else {"prompt": prompt, "response": words})
        views.append(MemoryEvent.build(fields))
    return views


def with_views(events: Iterable[MemoryEvent], count: int, links: int = 0) -> tuple[list[MemoryEvent], dict[str, int]]:
    """The views of ``events`` (without the events) and the counts: views made, and why none for the others;
    with ``links``, each conversation turn's :func:`~learner.memory.links.linked_views` after them.

    >>> from contracts.events import MemoryEvent
    >>> notes = [MemoryEvent.build({"profile": "a", "ts": 0, "kind": "note", "text": t})
    ...          for t in ["The user's cat is Juno.", "ok", "Rain in Lyon today."]]
    >>> views, counts = with_views(notes, 2)
    >>> [v.text or v.response for v in views]
    ['Your cat is Juno.', 'My cat is Juno.']
    >>> counts
    {'views': 2, 'with_views': 1, 'no_view: a single word': 1, 'no_view: not about the user': 1}
    """
    events = list(events)
    views, counts = [], Counter()
    counts.update(views=0, with_views=0)
    for event in events:
        try:
            reason = why_no_view(event) if count > 0 else None
            made = views_of(event, count) if reason is None else []
        except Exception as exc:  # a view that cannot be made never costs the run: the memory trains as it is
            reason, made = f"failed ({type(exc).__name__})", []
        if reason is not None:
            counts[f"no_view: {reason}"] += 1
            continue
        views += made
        counts["views"] += len(made)
        counts["with_views"] += bool(made)
    if links > 0:
        try:
            linked = linked_views(events, links)
        except Exception as exc:  # as above: links that cannot be made never cost the run
            linked, counts[f"no_links: failed ({type(exc).__name__})"] = [], 1
        views += linked
        counts["linked"] = len(linked)
    return views, dict(counts)
