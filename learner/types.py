"""The learner's interfaces, in one small module.

Each protocol has one shared check suite in ``tests/`` parametrized over every
implementation (``tests/test_protocol_*.py``).

- :class:`ReplayBuffer` — ``add(item)``, ``sample(k, rng)``, ``snapshot()``/``restore()``.
- Drift detectors speak river's protocol (:class:`river.base.DriftDetector`):
  ``update(x)``, a ``drift_detected`` property and ``_reset()``; ours add ``snapshot()``.
- :class:`Regularizer` — a loss term: ``penalty(model)`` returns a scalar tensor, and
  ``add_gradient(model)`` adds its gradient to the parameters' after the loss's backward pass (the
  training loop's way); EWC also gives ``updated(fisher, anchor)``, the term after a run.
- :class:`Step` — what :meth:`learner.online.OnlineLearner.learn_one` observed for one event.
"""

from __future__ import annotations

import abc
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

if TYPE_CHECKING:
    from learner.training.plan import RunResult

T = TypeVar("T")

__all__ = ["ReplayBuffer", "Regularizer", "Step"]


class ReplayBuffer(abc.ABC, Generic[T]):
    """A bounded store of past examples for rehearsal."""

    seen: int

    @abc.abstractmethod
    def add(self, item: T) -> Any:
        """Offer one item to the buffer."""

    @abc.abstractmethod
    def sample(self, k: int, rng: random.Random, keep: Callable[[T], bool] | None = None) -> list[T]:
        """Draw up to ``k`` distinct items with the caller's generator."""

    @abc.abstractmethod
    def snapshot(self, encode: Callable[[T], Any] = ...) -> dict[str, Any]:
        """A JSON-ready dict from which :meth:`restore` rebuilds the same buffer."""

    @classmethod
    @abc.abstractmethod
    def restore(cls, data: dict[str, Any], decode: Callable[[Any], T] = ...) -> "ReplayBuffer[T]":
        """Inverse of :meth:`snapshot`."""

    @abc.abstractmethod
    def __len__(self) -> int: ...


class Regularizer(abc.ABC):
    """A loss term that protects what earlier versions learned (EWC is one)."""

    @abc.abstractmethod
    def penalty(self, named_parameters: dict[str, Any]) -> Any:
        """Scalar tensor added to the task loss: ``loss = task_loss + penalty``."""

    def add_gradient(self, named_parameters: dict[str, Any]) -> Any:
        """Add the penalty's gradient to each parameter's ``.grad`` (after the task loss's backward pass)
        and return its value, detached: what ``penalty(...).backward()`` gives. An implementation may
        compute it more cheaply."""
        value = self.penalty(named_parameters)
        if value.requires_grad:
            value.backward()
        return value.detach()


@dataclass
class Step:
    """What :meth:`learner.online.OnlineLearner.learn_one` observed for one event.

    >>> Step(events_seen=3, duplicate=True)
    Step(events_seen=3, duplicate=True, quality=None, dropped=False, drift=None, trigger=None, consolidation=None)"""

    events_seen: int
    duplicate: bool = False
    quality: str | None = None  # why the quality gate flagged it (None: it passed)
    dropped: bool = False  # flagged and not learned (quality.mode = drop)
    drift: dict[str, Any] | None = None
    trigger: str | None = None
    consolidation: RunResult | None = None
