"""The divergence and the surprise of word counts against a smoothed reference distribution: pure
functions on numpy arrays, shared by the KL detector, its calibration and the drift benchmark.

The reference q = (1 − s)·p̂ + s/K is smoothed; the window is not (smoothing it too would make the
divergence depend on the window's size). Buckets the reference has never seen are pooled into one
"unseen" category whose q is the smoothing mass they share.

>>> ref = reference(np.array([3.0, 1.0, 0.0, 0.0]), smoothing=0.01)
>>> round(kl_divergence(np.array([3.0, 1.0, 0.0, 0.0]), ref), 4)
0.005
>>> round(kl_divergence(np.array([0.0, 0.0, 4.0, 0.0]), ref), 3)
5.298
>>> round(surprise({0: 1, 1: 1}, ref), 3)
0.84
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import xlogy

__all__ = ["Reference", "kl_divergence", "reference", "smoothed", "surprise"]


class Reference(NamedTuple):
    """A reference distribution, ready for :func:`kl_divergence` and :func:`surprise`.

    >>> ref = reference(np.array([2.0, 0.0]), smoothing=0.1)
    >>> ref.seen.tolist(), round(float(np.exp(ref.log_q_unseen)), 3)
    ([1.0, 0.0], 0.05)"""

    log_q: np.ndarray  # log of the smoothed reference distribution (0 where the reference has no counts)
    seen: np.ndarray  # 1.0 for the buckets the reference has counts in, else 0.0
    log_q_unseen: float  # log of the mass the other buckets share (the pooled "unseen" category)
    log_q_list: list[float]  # log q of every bucket, for per-word lookups (a list indexes faster than an array)


def smoothed(counts: np.ndarray, smoothing: float) -> np.ndarray:
    """``(1 − smoothing)·counts/Σcounts + smoothing/K`` (uniform when there are no counts)."""
    n_buckets = len(counts)
    total = counts.sum()
    empirical = counts / total if total > 0 else np.full(n_buckets, 1.0 / n_buckets)
    return (1 - smoothing) * empirical + smoothing / n_buckets


def reference(counts: np.ndarray, smoothing: float) -> Reference:
    """The smoothed reference built from ``counts``."""
    q = smoothed(counts, smoothing)
    seen = counts > 0
    q_unseen = float(q[~seen].sum())
    log_q = np.log(q)
    return Reference(np.where(seen, log_q, 0.0), seen.astype(np.float64),
                     math.log(q_unseen) if q_unseen > 0 else -math.inf, log_q.tolist())


def kl_divergence(window_counts: np.ndarray, ref: Reference) -> float:
    """KL(window || reference), the buckets the reference lacks pooled into one. With w the window's
    counts (T in all), over the buckets the reference has: Σ p·log(p/q) = (Σ w·log w − Σ w·log q)/T − log T · W/T."""
    total = float(window_counts.sum())
    if total <= 0:
        return 0.0
    w = window_counts * ref.seen
    in_seen = float(w.sum())
    divergence = 0.0
    if in_seen > 0:
        divergence = (float(xlogy(w, w).sum()) - float(w @ ref.log_q)) / total - math.log(total) * in_seen / total
    p_unseen = (total - in_seen) / total
    if p_unseen > 1e-12:
        divergence += p_unseen * (math.log(p_unseen) - ref.log_q_unseen)
    return max(divergence, 0.0)


def surprise(counts: dict[int, int], ref: Reference) -> float:
    """Mean −log q over an event's words (nats per word); ``counts`` must not be empty."""
    log_q = ref.log_q_list
    total = n = 0.0
    for bucket, c in counts.items():
        total -= log_q[bucket] * c
        n += c
    return total / n
