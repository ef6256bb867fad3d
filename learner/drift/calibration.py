"""The KL threshold, calibrated on the baseline itself: pure functions over a matrix of per-event
word counts (one row per baseline event).

On a varied baseline, most of D under no drift comes from words a window has and the
reference lacks, and from the finite window's own noise (the plug-in KL's bias grows with the
number of distinct words). A bootstrap that compares half the baseline with windows drawn *with
replacement* from the other half overstates that (repeated events, half-size reference) and puts
the threshold above what a real shift gives. memstream calibrates on the statistic
it will compute: ``n_bootstrap`` windows of ``window`` whole events drawn *without replacement*
from the baseline, each against the reference built from the rest of it (disjoint, as in
monitoring; whole events keep the words of one event together). A Gamma distribution fitted to
those divergences (by moments: 2n·KL is about χ² under independence, a Gamma in general) gives
the ``1 − alpha`` quantile; times ``margin`` it is the threshold. The χ² bound χ²(K'−1, 1−alpha)/(2n)
is reported beside it for reference.

>>> rng = np.random.default_rng(0)
>>> matrix = rng.poisson(1.0, size=(200, 16)).astype(np.float32)
>>> threshold, mean = null_quantile(matrix, window=20, n_bootstrap=50, alpha=0.01, smoothing=0.01, seed=[0, 1])
>>> 0 < mean < threshold
True
>>> round(chi2_threshold(matrix.sum(axis=0, dtype=np.float64), 200, window=20, alpha=0.01), 4)
0.0479
"""

from __future__ import annotations

import numpy as np

from learner.drift.divergence import kl_divergence, reference

__all__ = ["chi2_threshold", "null_quantile"]


def chi2_threshold(total: np.ndarray, n_events: int, window: int, alpha: float) -> float:
    """χ²(K'−1, 1−alpha)/(2n): K' buckets with counts, n the words a window of ``window`` events holds."""
    from scipy.stats import chi2

    n = max(total.sum() / max(n_events, 1) * window, 1.0)
    support = max(int(np.count_nonzero(total)), 2)
    return float(chi2.ppf(1 - alpha, support - 1) / (2 * n))


def null_quantile(matrix: np.ndarray, window: int, n_bootstrap: int, alpha: float, smoothing: float,
                  seed, margin: float = 1.0) -> tuple[float, float]:
    """The calibrated threshold (Gamma quantile × ``margin``) and the mean divergence under no drift."""
    from scipy.stats import gamma

    total = matrix.sum(axis=0, dtype=np.float64)
    n_events = len(matrix)
    size = min(window, n_events // 2)
    rng = np.random.default_rng(seed)
    draws = np.empty(max(n_bootstrap, 2))
    for b in range(len(draws)):
        rows = rng.choice(n_events, size=size, replace=False)
        drawn = matrix[rows].sum(axis=0, dtype=np.float64)
        draws[b] = kl_divergence(drawn, reference(total - drawn, smoothing))
    mean, var = float(draws.mean()), float(draws.var())
    if var <= 0 or mean <= 0:
        return max(mean, 1e-9) * margin, mean
    return float(gamma.ppf(1 - alpha, mean * mean / var, scale=var / mean)) * margin, mean
