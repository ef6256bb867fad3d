"""Replay buffers: what the learner keeps of the past to rehearse it.

:class:`ReservoirBuffer` is Vitter's Algorithm R: after ``n`` items have been offered,
each of them sits in the buffer with the same probability ``capacity / n``. Each
``add`` is O(1) work and the memory is bounded by ``capacity``.

:class:`RecentBuffer` holds the examples that arrived since the last consolidation
(bounded; the oldest fall out first and are counted).

Examples
--------
>>> buf = ReservoirBuffer(capacity=3, seed=7)
>>> for i in range(10):
...     _ = buf.add(i)
>>> buf.seen, len(buf), sorted(buf.items)
(10, 3, [3, 7, 8])
>>> clone = ReservoirBuffer.restore(buf.snapshot())
>>> for i in range(10, 20):
...     _ = buf.add(i), clone.add(i)
>>> buf.items == clone.items
True
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from typing import Any, Callable, Generic, TypeVar

from learner.memory.config import ReplayConfig
from learner.types import ReplayBuffer

T = TypeVar("T")

__all__ = ["ReservoirBuffer", "RecentBuffer", "WeightedReservoirBuffer"]


def _rng_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_state_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


class _SeededReservoir(ReplayBuffer, Generic[T]):
    """What both reservoirs share: capacity, a seeded generator, the seen-count, sampling, snapshots."""

    kind = ""

    def __init__(self, capacity: int = ReplayConfig.capacity, seed: int = ReplayConfig.seed):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.seed = seed
        self._rng = random.Random(seed)
        self.seen = 0

    def __iter__(self):
        return iter(self.items)

    def sample(self, k: int, rng: random.Random, keep: Callable[[T], bool] | None = None) -> list[T]:
        """Draw ``k`` distinct items (fewer if the buffer holds fewer) with ``rng``.

        ``keep`` is an optional predicate; items for which it is false are never drawn.

        >>> buf = ReservoirBuffer(capacity=5, seed=0)
        >>> for i in range(5):
        ...     _ = buf.add(i)
        >>> sorted(buf.sample(2, random.Random(1), keep=lambda x: x % 2 == 0))
        [0, 4]
        """
        pool = [item for item in self.items if keep is None or keep(item)]
        return rng.sample(pool, min(k, len(pool)))

    def snapshot(self, encode=lambda item: item) -> dict[str, Any]:
        """A JSON-ready dict holding the items, the seen-count and the RNG state."""
        return {
            "kind": self.kind,
            "capacity": self.capacity,
            "seed": self.seed,
            "seen": self.seen,
            "rng_state": _rng_state_to_json(self._rng.getstate()),
            **self._payload(encode),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], decode=lambda item: item):
        """Rebuild a buffer from :meth:`snapshot`; it continues the same sample."""
        if data.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} snapshot (kind={data.get('kind')!r})")
        buf = cls(capacity=data["capacity"], seed=data["seed"])
        buf.seen = int(data["seen"])
        buf._rng.setstate(_rng_state_from_json(data["rng_state"]))
        buf._load_payload(data, decode)
        return buf

    def _payload(self, encode) -> dict[str, Any]:
        raise NotImplementedError

    def _load_payload(self, data: dict[str, Any], decode) -> None:
        raise NotImplementedError


class ReservoirBuffer(_SeededReservoir[T]):
    """Uniform sample of everything seen, of at most ``capacity`` items (Algorithm R).

    Parameters
    ----------
    capacity
        How many items the buffer holds at most.
    seed
        Seed of the buffer's own random generator; the same seed and the same stream
        give the same sample.
    """

    kind = "reservoir"

    def __init__(self, capacity: int = ReplayConfig.capacity, seed: int = ReplayConfig.seed):
        super().__init__(capacity, seed)
        self._items: list[T] = []

    def add(self, item: T) -> int | None:
        """Offer one item; return the slot it took, or ``None`` when it was not kept."""
        index = self.seen  # 0-based position of this item in the stream
        self.seen += 1
        if index < self.capacity:
            self._items.append(item)
            return index
        # Keep item i with probability k/(i+1): draw j uniformly from [0, i] *inclusive*.
        slot = self._rng.randrange(index + 1)
        if slot < self.capacity:
            self._items[slot] = item
            return slot
        return None

    @property
    def items(self) -> list[T]:
        """The items now held (a copy; order is slot order)."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def _payload(self, encode) -> dict[str, Any]:
        return {"items": [encode(item) for item in self._items]}

    def _load_payload(self, data: dict[str, Any], decode) -> None:
        self._items = [decode(item) for item in data["items"]]
        if len(self._items) != min(self.seen, self.capacity):
            raise ValueError(
                f"reservoir snapshot holds {len(self._items)} items but saw {self.seen} "
                f"with capacity {self.capacity}"
            )


class WeightedReservoirBuffer(_SeededReservoir[T]):
    """Weighted sample without replacement of everything seen (Efraimidis–Spirakis A-Res).

    Each item gets the key ``log(u) / w`` (``u`` uniform in (0, 1), ``w`` its weight) and the
    ``capacity`` largest keys stay. With weight = an event's loss under the current model,
    surprising memories are more likely to be replayed. O(log capacity) per ``add``.

    >>> buf = WeightedReservoirBuffer(capacity=2, seed=0)
    >>> for i in range(6):
    ...     _ = buf.add(i, weight=10.0 if i == 5 else 0.1)
    >>> 5 in buf.items, buf.seen
    (True, 6)
    """

    kind = "weighted-reservoir"

    def __init__(self, capacity: int = ReplayConfig.capacity, seed: int = ReplayConfig.seed):
        super().__init__(capacity, seed)
        self._heap: list[tuple[float, int, T]] = []  # (key, arrival index, item): smallest key on top

    def add(self, item: T, weight: float = 1.0) -> bool:
        """Offer one item with a positive ``weight``; return whether it was kept."""
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"weight must be a positive finite number, got {weight!r}")
        index = self.seen
        self.seen += 1
        key = math.log(1.0 - self._rng.random()) / weight  # log(u), u in (0, 1]
        entry = (key, index, item)
        if len(self._heap) < self.capacity:
            heapq.heappush(self._heap, entry)
            return True
        if key > self._heap[0][0]:
            heapq.heapreplace(self._heap, entry)
            return True
        return False

    @property
    def items(self) -> list[T]:
        """The items now held, in arrival order."""
        return [item for _, _, item in sorted(self._heap, key=lambda e: e[1])]

    def __len__(self) -> int:
        return len(self._heap)

    def _payload(self, encode) -> dict[str, Any]:
        return {"entries": [[key, index, encode(item)] for key, index, item in self._heap]}

    def _load_payload(self, data: dict[str, Any], decode) -> None:
        self._heap = [(float(key), int(index), decode(item)) for key, index, item in data["entries"]]
        heapq.heapify(self._heap)


class RecentBuffer(Generic[T]):
    """The examples since the last consolidation, oldest first, at most ``capacity``.

    >>> recent = RecentBuffer(capacity=2)
    >>> for x in "abc":
    ...     recent.add(x)
    >>> recent.items, recent.dropped
    (['b', 'c'], 1)
    >>> recent.remove_where(lambda x: x == 'b'), recent.items
    (1, ['c'])
    """

    def __init__(self, capacity: int = ReplayConfig.recent_capacity):
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self.dropped = 0

    def add(self, item: T) -> None:
        if len(self._items) == self.capacity:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)

    @property
    def items(self) -> list[T]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def remove_where(self, covered: Callable[[T], bool]) -> int:
        """Remove the items a finished consolidation covered; items that arrived meanwhile stay.

        Returns how many were removed.
        """
        before = len(self._items)
        self._items = deque(item for item in self._items if not covered(item))
        return before - len(self._items)

    def snapshot(self, encode=lambda item: item) -> dict[str, Any]:
        return {
            "kind": "recent",
            "capacity": self.capacity,
            "dropped": self.dropped,
            "items": [encode(item) for item in self._items],
        }

    @classmethod
    def restore(cls, data: dict[str, Any], decode=lambda item: item) -> "RecentBuffer":
        if data.get("kind") != "recent":
            raise ValueError(f"not a recent-buffer snapshot (kind={data.get('kind')!r})")
        buf = cls(capacity=data["capacity"])
        buf.dropped = int(data["dropped"])
        buf._items = deque(decode(item) for item in data["items"])
        return buf


