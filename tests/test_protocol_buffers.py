"""One check suite for replay buffers, parametrized over every implementation; plus Algorithm R's law."""

import copy
import random
import tracemalloc

import numpy as np
import pytest
from scipy.stats import chisquare

from learner.memory.replay import RecentBuffer, ReservoirBuffer, WeightedReservoirBuffer

BUFFERS = [
    pytest.param(lambda: ReservoirBuffer(capacity=10, seed=1), id="reservoir"),
    pytest.param(lambda: WeightedReservoirBuffer(capacity=10, seed=1), id="weighted-reservoir"),
    pytest.param(lambda: RecentBuffer(capacity=10), id="recent"),
]


@pytest.mark.parametrize("make", BUFFERS)
def test_bounded(make):
    buf = make()
    for i in range(1000):
        buf.add(i)
    assert len(buf) == 10


@pytest.mark.parametrize("make", BUFFERS)
def test_inputs_unchanged(make):
    buf = make()
    items = [{"n": i} for i in range(30)]
    before = copy.deepcopy(items)
    for item in items:
        buf.add(item)
    assert items == before


@pytest.mark.parametrize("make", BUFFERS)
def test_snapshot_restore_continues_identically(make):
    a = make()
    for i in range(25):
        a.add(i)
    b = type(a).restore(a.snapshot())
    for i in range(25, 200):
        a.add(i)
        b.add(i)
    assert a.items == b.items


@pytest.mark.parametrize("make", BUFFERS)
def test_same_seed_same_result(make):
    a, b = make(), make()
    for i in range(500):
        a.add(i)
        b.add(i)
    assert a.items == b.items


def test_restore_rejects_inconsistent_snapshot():
    buf = ReservoirBuffer(capacity=3, seed=0)
    for i in range(5):
        buf.add(i)
    snap = buf.snapshot()
    snap["items"] = snap["items"][:2]
    with pytest.raises(ValueError, match="holds 2 items but saw 5"):
        ReservoirBuffer.restore(snap)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reservoir_inclusion_is_uniform_over_stream_position(seed):
    """200,000 events, capacity 1,000: kept items spread evenly over 20 position buckets."""
    n, k, buckets = 200_000, 1_000, 20
    buf = ReservoirBuffer(capacity=k, seed=seed)
    for i in range(n):
        buf.add(i)
    counts = np.bincount(np.array(buf.items) * buckets // n, minlength=buckets)
    assert counts.sum() == k
    assert chisquare(counts).pvalue > 0.01


def test_off_by_one_would_be_caught():
    """Drawing the slot from [0, i) instead of [0, i] over-keeps late items: the test above sees it."""

    class OffByOne(ReservoirBuffer):
        def add(self, item):
            index = self.seen
            self.seen += 1
            if index < self.capacity:
                self._items.append(item)
                return
            slot = self._rng.randrange(index)  # the classic bug
            if slot < self.capacity:
                self._items[slot] = item

    # with a tiny stream the bias k/i vs k/(i+1) is large: the first item outlives the uniform law
    trials, kept_first = 20_000, {"good": 0, "bad": 0}
    for t in range(trials):
        for name, cls in (("good", ReservoirBuffer), ("bad", OffByOne)):
            buf = cls(capacity=1, seed=t)
            for i in range(3):
                buf.add(i)
            kept_first[name] += buf.items[0] == 2
    assert abs(kept_first["good"] / trials - 1 / 3) < 0.02
    assert abs(kept_first["bad"] / trials - 1 / 2) < 0.02


def test_reservoir_memory_stays_flat():
    buf = ReservoirBuffer(capacity=1_000, seed=0)
    for i in range(20_000):
        buf.add(i)
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(20_000, 200_000):
        buf.add(i)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(buf) == 1_000
    assert after - base < 200_000  # bytes: ints replaced in place, nothing accumulates


def test_sample_respects_keep_and_rng():
    buf = ReservoirBuffer(capacity=50, seed=0)
    for i in range(50):
        buf.add(i)
    a = buf.sample(10, random.Random(5), keep=lambda x: x >= 25)
    assert a == buf.sample(10, random.Random(5), keep=lambda x: x >= 25)
    assert len(set(a)) == 10 and all(x >= 25 for x in a)


def test_weighted_reservoir_keeps_heavy_items_in_proportion():
    """Half the stream weighs 3, half 1: about three quarters of a small sample are heavy."""
    shares = []
    for seed in range(5):
        buf = WeightedReservoirBuffer(capacity=200, seed=seed)
        for i in range(40_000):
            buf.add(i, weight=3.0 if i % 2 else 1.0)
        shares.append(sum(i % 2 for i in buf.items) / len(buf))
    assert 0.70 < float(np.mean(shares)) < 0.80, shares


def test_weighted_reservoir_with_equal_weights_is_uniform_over_position():
    buf = WeightedReservoirBuffer(capacity=1_000, seed=0)
    for i in range(100_000):
        buf.add(i)
    counts = np.bincount(np.array(buf.items) * 20 // 100_000, minlength=20)
    assert chisquare(counts).pvalue > 0.01


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_weighted_reservoir_rejects_bad_weights(weight):
    with pytest.raises(ValueError, match="weight must be a positive finite number"):
        WeightedReservoirBuffer(capacity=2).add("x", weight=weight)
