import pytest

from contracts.events import InvalidEvent, MemoryEvent, content_id, validate_profile

BASE = {"v": 1, "profile": "alice", "ts": 1.5, "kind": "note", "text": "hello"}


def with_(**changes):
    data = dict(BASE)
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return data


@pytest.mark.parametrize("data, reason", [
    (with_(v=2), "unknown schema version"),
    (with_(v=...), "missing required field 'v'"),
    (with_(profile=...), "missing required field 'profile'"),
    (with_(ts="yesterday"), "field 'ts' must be"),
    (with_(ts=float("nan")), "finite"),
    (with_(kind=3), "field 'kind' must be str"),
    (with_(text=...), "needs 'text', or both"),
    (with_(prompt="q", response="a"), "not both"),
    (with_(text=""), "empty"),
    (with_(profile="a/b"), "profile 'a/b'"),
    (with_(profile=".."), "profile '..'"),
    (with_(profile="x" * 65), "must match"),
    (with_(meta={"domain": [1]}), "must be a scalar"),
    (with_(id=""), "field 'id'"),
    (with_(v=True), "field 'v' must be int"),
    ([1, 2], "must be a map"),
])
def test_invalid_events_name_the_problem(data, reason):
    with pytest.raises(InvalidEvent, match=reason):
        MemoryEvent.from_dict(data)


def test_prompt_response_event_round_trips():
    event = MemoryEvent.from_dict({**with_(text=...), "prompt": "q?", "response": "a.", "meta": {"domain": "x"}})
    assert event.training_text == "q?\na."
    assert event.domain == "x"
    assert MemoryEvent.from_dict(event.to_dict()) == event


def test_id_is_derived_from_content_not_time():
    a = MemoryEvent.from_dict(BASE)
    b = MemoryEvent.from_dict(with_(ts=99.0))
    c = MemoryEvent.from_dict(with_(text="other"))
    assert a.id == b.id != c.id
    assert a.id == content_id(BASE)


def test_explicit_id_is_kept():
    assert MemoryEvent.from_dict(with_(id="evt-1")).id == "evt-1"


@pytest.mark.parametrize("name", ["a", "A_b-c.d", "x" * 64])
def test_valid_profiles(name):
    assert validate_profile(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a b", "a\x00b", "/abs", "ü", None, 3])
def test_invalid_profiles(name):
    with pytest.raises(InvalidEvent):
        validate_profile(name)
