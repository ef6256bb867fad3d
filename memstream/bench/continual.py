r"""Continual-learning measures from a loss matrix (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018).

``R[i][j]`` is the held-out loss on domain ``j`` after training stage ``i`` (stage ``i`` is
the one that trains domain ``i``); ``b[j]`` ("initial") is the loss on domain ``j`` of the
model before stage 0 (in the forgetting benchmark: the foundation model). Lower loss is better, so every sign is written such that **a positive number is
good** for transfer and **a positive number is bad** for forgetting, as in the papers::

    final_loss   = 1/T       Σ_j        R[T-1][j]
    bwt          = 1/(T-1)   Σ_{j<T-1}  (R[j][j] − R[T-1][j])          < 0: loss rose after learning = forgot
    fwt          = 1/(T-1)   Σ_{j≥1}    (b[j] − R[j-1][j])             > 0: earlier stages helped domain j
    forgetting_j = R[T-1][j] − min_{j≤i<T-1} R[i][j]                   (final minus best since learned)
    forgetting   = 1/(T-1)   Σ_{j<T-1}  forgetting_j
    plasticity_j = R[j-1][j] − R[j][j]     (R[-1] = b)                  (what stage j gained on its own domain)
    plasticity   = mean over j of plasticity_j   (j ≥ 0 with b, else j ≥ 1)

Examples
--------
>>> m = continual_metrics([[2.0, 5.0, 6.0],
...                        [2.5, 3.0, 5.0],
...                        [3.0, 3.5, 4.0]], initial=[3.5, 7.0, 8.0])
>>> m.final_loss, m.bwt, m.fwt, m.forgetting, m.plasticity
(3.5, -0.75, 2.5, 0.75, 1.5)
>>> m.forgetting_per_domain, m.plasticity_per_domain
([1.0, 0.5], [1.5, 2.0, 1.0])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

__all__ = ["ContinualMetrics", "continual_metrics"]


@dataclass(frozen=True)
class ContinualMetrics:
    """The continual-learning measures of one loss matrix (see the module for the formulas).

    >>> m = continual_metrics([[1.0, 3.0], [2.0, 1.5]], initial=[3.0, 3.0])
    >>> m.final_loss, m.bwt, m.fwt, m.forgetting
    (1.75, -1.0, 0.0, 1.0)
    """

    final_loss: float
    bwt: float
    fwt: float | None
    forgetting: float
    plasticity: float
    forgetting_per_domain: list[float]
    plasticity_per_domain: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def continual_metrics(R: Sequence[Sequence[float]], initial: Sequence[float] | None = None) -> ContinualMetrics:
    """The measures above from a square loss matrix ``R`` (T×T, T ≥ 2) and optional ``initial`` losses.

    Raises ``ValueError`` naming the problem when ``R`` is not square or too small.
    """
    T = len(R)
    if T < 2 or any(len(row) != T for row in R):
        raise ValueError(f"R must be a square matrix with at least 2 stages, got shape "
                         f"{T}x{[len(row) for row in R]}")
    if initial is not None and len(initial) != T:
        raise ValueError(f"initial must have one loss per domain ({T}), got {len(initial)}")
    last = T - 1
    forgetting = [R[last][j] - min(R[i][j] for i in range(j, last)) for j in range(last)]
    plasticity = [(R[j - 1][j] if j else initial[0]) - R[j][j] for j in range(0 if initial is not None else 1, T)]
    return ContinualMetrics(
        final_loss=_mean(R[last]),
        bwt=_mean([R[j][j] - R[last][j] for j in range(last)]),
        fwt=None if initial is None else _mean([initial[j] - R[j - 1][j] for j in range(1, T)]),
        forgetting=_mean(forgetting),
        plasticity=_mean(plasticity),
        forgetting_per_domain=forgetting,
        plasticity_per_domain=plasticity,
    )
