"""Each patch of a client library's internals (streams/compat.py), tested on its own, and the start-up check
that refuses a library whose internals moved."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.structs import TopicPartition

from streams import compat


def test_the_installed_libraries_have_every_patch_point():
    compat.check_patch_points()


def test_a_library_whose_internals_moved_is_refused_in_one_line(monkeypatch):
    monkeypatch.delattr(Fetcher, "_proc_fetch_request")
    with pytest.raises(compat.CompatError, match="lacks aiokafka Fetcher._proc_fetch_request.*pyproject.toml pins"):
        compat.check_patch_points()


def _throttled(monkeypatch, fills):
    """The throttle installed over a stand-in for aiokafka's fetch (which adds records when ``fills``)."""
    tp = TopicPartition("t", 0)

    async def fetch(self, assignment, node_id, request):
        if fills:
            self._records[tp] = object()
        return True  # aiokafka's "needs wakeup": true on some errors too, so not what the patch reads

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", fetch)
    monkeypatch.setattr(compat, "_installed", False)
    compat.throttle_empty_fetches(pause_s=0.3)
    fetcher = SimpleNamespace(_records={})
    request = SimpleNamespace(topics=[("t", [(0, 0, 1024)])])
    started = time.monotonic()
    asyncio.run(Fetcher._proc_fetch_request(fetcher, None, 1, request))
    return time.monotonic() - started


def test_an_empty_fetch_is_followed_by_a_pause(monkeypatch):
    assert _throttled(monkeypatch, fills=False) >= 0.25


def test_a_fetch_that_brought_records_is_not_slowed(monkeypatch):
    assert _throttled(monkeypatch, fills=True) < 0.25


class _Consumer:
    def __init__(self, committed):
        self.committed, self.calls = committed, []

    async def seek_to_committed(self):
        return self.committed

    def seek(self, tp, offset):
        self.calls.append(("seek", tp, offset))

    async def seek_to_beginning(self, *tps):
        self.calls.append(("beginning", *tps))

    async def seek_to_end(self, *tps):
        self.calls.append(("end", *tps))


@pytest.mark.parametrize("reset, where", [("earliest", "beginning"), ("latest", "end")])
def test_partitions_without_a_commit_follow_the_reset_policy_and_a_commit_at_zero_is_kept(reset, where):
    consumer = _Consumer({"a": None, "b": 0, "c": 7})
    assert asyncio.run(compat.seek_to_committed_or_reset(consumer, reset)) == consumer.committed
    assert consumer.calls == [("seek", "b", 0), (where, "a")]  # "c" was sought by aiokafka itself
