"""The MemoryEvent contract (schema version 1) and its validation.

This module has no dependency beyond the standard library, so ``streams/``,
``producers/`` and ``consumers/`` can share it without importing torch or faust.

Examples
--------
>>> e = MemoryEvent.from_dict({"v": 1, "profile": "alice", "ts": 1.0,
...                            "kind": "note", "text": "Buy basil."})
>>> e.id
'0ddf10a38b6be52a5415fbb7'
>>> e.training_text
'Buy basil.'
>>> MemoryEvent.from_dict({"v": 1, "profile": "../etc", "ts": 1.0, "kind": "note", "text": "x"})
Traceback (most recent call last):
...
contracts.events.InvalidEvent: profile '../etc' must match [A-Za-z0-9_.-]{1,64} and not be '.' or '..'
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Iterator
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
MAX_TS = 1e11  # epoch seconds of the year 5138: anything above is a timestamp in milliseconds (or nonsense)
PROFILE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_ID_LENGTH = 128

__all__ = ["SCHEMA_VERSION", "InvalidEvent", "MemoryEvent", "validate_profile", "content_id"]


class InvalidEvent(ValueError):
    """An event that breaks the contract; the message is the reason shown to people."""


def validate_profile(profile: object) -> str:
    """Return ``profile`` if it is a safe profile name, else raise :class:`InvalidEvent`.

    A profile name becomes a directory name, so it may never escape the state directory.

    >>> validate_profile("bob_2")
    'bob_2'
    >>> validate_profile("a/b")
    Traceback (most recent call last):
    ...
    contracts.events.InvalidEvent: profile 'a/b' must match [A-Za-z0-9_.-]{1,64} and not be '.' or '..'
    """
    if (
        not isinstance(profile, str)
        or not PROFILE_PATTERN.fullmatch(profile)
        or profile in (".", "..")
    ):
        raise InvalidEvent(
            f"profile {profile!r} must match [A-Za-z0-9_.-]{{1,64}} and not be '.' or '..'"
        )
    return profile


def content_id(fields: dict[str, Any]) -> str:
    """Derive a stable event id from the content, so re-publishing is idempotent.

    The id hashes profile, kind and the text fields (not the timestamp: the same memory
    written twice is the same memory).

    >>> content_id({"profile": "a", "kind": "note", "text": "hi"})
    '0129b2230246646f9b18ed2a'
    """
    payload = json.dumps(
        {k: fields.get(k) for k in ("profile", "kind", "text", "prompt", "response")},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=12).hexdigest()


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise InvalidEvent(f"missing required field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidEvent(f"field {name!r} must be {expected}, got {type(value).__name__}")
    return value


def _optional_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidEvent(f"field {name!r} must be str, got {type(value).__name__}")
    return value


def _check_meta(meta: object) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidEvent(f"field 'meta' must be a map, got {type(meta).__name__}")
    for key, value in meta.items():
        if not isinstance(key, str):
            raise InvalidEvent(f"meta key {key!r} must be a string")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidEvent(f"meta[{key!r}] must be a scalar, got {type(value).__name__}")
    return dict(meta)


def _check_ts(value: int | float) -> float:
    """Epoch seconds, checked: finite, not negative, and not in milliseconds.

    >>> _check_ts(1767225600)
    1767225600.0
    >>> _check_ts(1767225600000)
    Traceback (most recent call last):
    ...
    contracts.events.InvalidEvent: field 'ts' = 1767225600000 looks like milliseconds; memory events take epoch seconds (1767225600.0)
    """
    ts = float(value)
    if not math.isfinite(ts):
        raise InvalidEvent(f"field 'ts' must be a finite number, got {value!r}")
    if ts < 0:
        raise InvalidEvent(f"field 'ts' = {value!r} is before 1970; memory events take epoch seconds")
    if ts >= MAX_TS:
        raise InvalidEvent(f"field 'ts' = {value!r} looks like milliseconds; memory events take epoch seconds "
                           f"({ts / 1000:.1f})" if ts < MAX_TS * 1000 else
                           f"field 'ts' = {value!r} is not epoch seconds (after the year 5000)")
    return ts


@dataclass(frozen=True)
class MemoryEvent:
    """One memory: a conversation turn, an observation, a reflection, a note.

    Either ``text`` is set, or both ``prompt`` and ``response`` (the loss is then taken
    on the response only).
    """

    id: str
    profile: str
    ts: float
    kind: str
    text: str | None = None
    prompt: str | None = None
    response: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    v: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, data: object) -> "MemoryEvent":
        """Validate a decoded event (JSON or msgpack map); raise :class:`InvalidEvent` with the reason."""
        if not isinstance(data, dict):
            raise InvalidEvent(f"an event must be a map, got {type(data).__name__}")
        version = _require(data, "v", int)
        if version != SCHEMA_VERSION:
            raise InvalidEvent(f"unknown schema version v={version!r} (this reader knows v=1)")
        profile = validate_profile(_require(data, "profile", str))
        ts = _check_ts(_require(data, "ts", (int, float)))
        kind = _require(data, "kind", str)
        text = _optional_str(data, "text")
        prompt = _optional_str(data, "prompt")
        response = _optional_str(data, "response")
        if text is None and (prompt is None or response is None):
            raise InvalidEvent("an event needs 'text', or both 'prompt' and 'response'")
        if text is not None and (prompt is not None or response is not None):
            raise InvalidEvent("an event has either 'text' or 'prompt' + 'response', not both")
        if not (text or response):
            raise InvalidEvent("the event's text (or response) is empty")
        event_id = data.get("id")
        if event_id is None:
            event_id = content_id(data)
        elif not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_ID_LENGTH:
            raise InvalidEvent(f"field 'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
        return cls(
            id=event_id,
            profile=profile,
            ts=ts,
            kind=kind,
            text=text,
            prompt=prompt,
            response=response,
            meta=_check_meta(data.get("meta")),
        )

    @classmethod
    def build(cls, fields: "dict[str, Any] | MemoryEvent", now: float | None = None) -> "MemoryEvent":
        """The rule every entry point follows for what a writer may leave out: ``v`` (the current
        schema), ``ts`` (now) and ``id`` (a content hash) are filled in; anything else must be there.

        >>> e = MemoryEvent.build({"profile": "alice", "kind": "note", "text": "tea at five"}, now=5.0)
        >>> e.v, e.ts, e.id == MemoryEvent.build({**e.to_dict(), "id": None}).id
        (1, 5.0, True)
        """
        if isinstance(fields, MemoryEvent):
            return fields
        if not isinstance(fields, dict):
            raise InvalidEvent(f"an event must be a map, got {type(fields).__name__}")
        data = {k: v for k, v in fields.items() if not (k in ("v", "ts", "id") and v is None)}
        data.setdefault("v", SCHEMA_VERSION)
        if "ts" not in data:
            data["ts"] = time.time() if now is None else now
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: a plain map without unset optional fields."""
        # built by hand, not with dataclasses.asdict: snapshots call this for every buffered event
        out: dict[str, Any] = {"id": self.id, "profile": self.profile, "ts": self.ts, "kind": self.kind}
        for name in ("text", "prompt", "response"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.meta:
            out["meta"] = dict(self.meta)
        out["v"] = self.v
        return out

    @property
    def training_text(self) -> str:
        """All the text of the event, as drift features and replay see it."""
        if self.text is not None:
            return self.text
        return f"{self.prompt}\n{self.response}"

    @property
    def domain(self) -> str | None:
        """``meta.domain`` when the producer set one (benchmarks group by it)."""
        value = self.meta.get("domain")
        return None if value is None else str(value)


def read_jsonl(path: Path | None) -> Iterator[tuple[int, MemoryEvent | None, str | None]]:
    """Yield ``(line_index, event, error)`` for each non-blank line of a JSONL file (``None``: stdin);
    exactly one of event/error is set. What a writer may leave out is filled in (:meth:`MemoryEvent.build`)."""
    stream = sys.stdin.buffer if path is None else open(path, "rb")
    try:
        for index, raw in enumerate(stream):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield index, None, f"not valid UTF-8 (byte {exc.start})"
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield index, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            try:
                yield index, MemoryEvent.build(data), None
            except InvalidEvent as exc:
                yield index, None, str(exc)
    finally:
        if path is not None:
            stream.close()
