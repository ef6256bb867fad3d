"""The wire format: msgpack maps with hard limits, validated against the event contracts.

Importable without faust or kafka. Decoding never trusts its input: the size is checked
before anything is parsed, msgpack's own limits cap every string, array and map, extension
types are refused, and the decoded map must pass :meth:`contracts.events.MemoryEvent.from_dict`.
Every refusal is a :class:`DecodeError` whose message is the dead-letter reason.

Examples
--------
>>> codec = EventCodec(max_event_bytes=1024, max_text_chars=64)
>>> wire = codec.encode_memory({"v": 1, "profile": "alice", "ts": 1.0, "kind": "note", "text": "tea at five"})
>>> event = codec.decode_memory(wire)
>>> event.profile, event.text, len(event.id)
('alice', 'tea at five', 24)
>>> codec.decode_memory(b"\\xc1")
Traceback (most recent call last):
...
contracts.codec.DecodeError: not msgpack: ...
>>> codec.decode_memory(codec.encode({"v": 2, "profile": "a", "ts": 0, "kind": "k", "text": "x"}))
Traceback (most recent call last):
...
contracts.codec.DecodeError: invalid event: unknown schema version v=2 (this reader knows v=1)
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgpack

from contracts.events import SCHEMA_VERSION, InvalidEvent, MemoryEvent

__all__ = ["DecodeError", "EventCodec", "dead_letter", "model_updated_event", "drift_alert_event",
           "MODEL_UPDATED_FIELDS", "DRIFT_ALERT_FIELDS"]

#: Required fields of the outgoing contracts (DESIGN.md, version 1).
MODEL_UPDATED_FIELDS = ("v", "profile", "version", "parent_version", "run_id", "ts", "base_model", "adapter_path",
                        "sha256", "trigger", "samples_new", "samples_replay", "steps", "duration_s", "metrics",
                        "accepted")
DRIFT_ALERT_FIELDS = ("v", "profile", "ts", "detector", "divergence", "threshold", "window", "baseline_size",
                      "top_features", "action")
DEAD_LETTER_FIELDS = ("v", "reason", "topic", "partition", "offset", "key", "value", "ts")


class DecodeError(ValueError):
    """A message that is not a valid event; the message is the reason given in dead letters."""


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


class EventCodec:
    """Encode and decode the project's msgpack events under hard limits.

    Parameters
    ----------
    max_event_bytes
        Largest encoded event accepted.
    max_text_chars
        Longest string accepted anywhere in an event.
    """

    def __init__(self, max_event_bytes: int = 65536, max_text_chars: int = 16000):
        self.max_event_bytes = max_event_bytes
        self.max_text_chars = max_text_chars

    # -- any map -----------------------------------------------------------------------
    @staticmethod
    def encode(data: dict[str, Any]) -> bytes:
        """Pack a map (strings as str, bytes as bin; no extension types)."""
        return msgpack.packb(data, use_bin_type=True, datetime=False)

    def decode_map(self, data: bytes) -> dict[str, Any]:
        """Unpack one map under the limits, or raise :class:`DecodeError` saying why."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"message value must be bytes, got {type(data).__name__}")
        if len(data) == 0:
            raise DecodeError("empty message")
        if len(data) > self.max_event_bytes:
            raise DecodeError(f"event of {len(data)} bytes is over the limit of {self.max_event_bytes}")
        limit = self.max_text_chars * 4  # a character is at most 4 bytes of UTF-8
        try:
            value = msgpack.unpackb(
                bytes(data), raw=False, strict_map_key=True, ext_hook=_refuse_ext, timestamp=0,
                max_str_len=limit, max_bin_len=limit, max_array_len=4096, max_map_len=256, max_ext_len=0,
            )
        except DecodeError:
            raise
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 in a string: {exc.reason} at byte {exc.start}") from None
        except (msgpack.ExtraData,) as exc:
            raise DecodeError(f"trailing bytes after the event ({type(exc).__name__})") from None
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
            text = str(exc)
            if "max_ext_len" in text:
                raise DecodeError("msgpack extension types are not allowed") from None
            if "max_str_len" in text or "max_bin_len" in text:
                raise DecodeError(f"a string is over the limit of {self.max_text_chars} characters") from None
            raise DecodeError(f"not msgpack: {type(exc).__name__}: {text[:120]}") from None
        if not isinstance(value, dict):
            raise DecodeError(f"an event must be a msgpack map, got {type(value).__name__}")
        self._check_strings(value, depth=0)
        return value

    def _check_strings(self, value: Any, depth: int) -> None:
        if depth > 4:
            raise DecodeError("event nests deeper than 4 levels")
        if isinstance(value, str):
            if len(value) > self.max_text_chars:
                raise DecodeError(f"a string of {len(value)} characters is over the limit of {self.max_text_chars}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise DecodeError(f"non-finite number {value!r}")
        elif isinstance(value, dict):
            for k, v in value.items():
                self._check_strings(k, depth + 1)
                self._check_strings(v, depth + 1)
        elif isinstance(value, list):
            for v in value:
                self._check_strings(v, depth + 1)

    # -- memory events -----------------------------------------------------------------
    def encode_memory(self, event: MemoryEvent | dict[str, Any]) -> bytes:
        """Validate and pack a memory event (an id is derived from the content when missing)."""
        if not isinstance(event, MemoryEvent):
            event = MemoryEvent.from_dict({"v": SCHEMA_VERSION, **event})
        wire = self.encode(event.to_dict())
        if len(wire) > self.max_event_bytes:
            raise InvalidEvent(f"event of {len(wire)} bytes is over the limit of {self.max_event_bytes}")
        return wire

    def decode_memory(self, data: bytes) -> MemoryEvent:
        """Unpack and validate a memory event, or raise :class:`DecodeError` with the reason."""
        value = self.decode_map(data)
        try:
            return MemoryEvent.from_dict(value)
        except InvalidEvent as exc:
            raise DecodeError(f"invalid event: {exc}") from None


def dead_letter(reason: str, topic: str, partition: int, offset: int, key: bytes | None,
                value: bytes | None) -> dict[str, Any]:
    """The dead-letter map: original key and bytes, the reason and where the message came from.

    Its ``id`` names the message it stands for, so a copy sent again after a crash is recognisable."""
    return {"v": SCHEMA_VERSION, "id": f"dead-letter/{topic}/{partition}/{offset}", "reason": reason, "topic": topic,
            "partition": partition, "offset": offset, "key": key, "value": value, "ts": time.time()}


def _versioned(data: dict[str, Any], required: tuple[str, ...], what: str) -> dict[str, Any]:
    event = {"v": SCHEMA_VERSION, **data}
    missing = [name for name in required if name not in event]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    return event


def model_updated_event(report: dict[str, Any]) -> dict[str, Any]:
    """A ModelUpdated map from a consolidation report (accepted or not)."""
    return _versioned(report, MODEL_UPDATED_FIELDS, "consolidation report")


def drift_alert_event(alert: dict[str, Any]) -> dict[str, Any]:
    """A DriftAlert map from a learner's alert."""
    return _versioned(alert, DRIFT_ALERT_FIELDS, "drift alert")
