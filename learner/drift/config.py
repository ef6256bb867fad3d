"""Settings of the drift detectors (``[drift]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from learner.fields import require, setting

__all__ = ["DriftConfig"]


@dataclass
class DriftConfig:
    """The ``[drift]`` section: the KL detector's window, baseline and calibration, and the river signals.

    >>> DriftConfig().kl_params()["window"], DriftConfig(alpha=0.05).alpha
    (100, 0.05)
    >>> DriftConfig(window=50, baseline_size=20)
    Traceback (most recent call last):
    ...
    learner.fields.ConfigError: drift.baseline_size = 20: must be at least drift.window (50)
    """

    enabled: bool = setting("Run the drift detector (KL over hashed content words, and a river detector on each "
                          "event's surprise).", True)
    window: int = setting("Events in the sliding window compared against the baseline.", 100)
    baseline_size: int = setting("Events collected as baseline before monitoring (and after a rebase).", 500)
    n_buckets: int = setting("Hashed content-word buckets (K).", 1024)
    smoothing: float = setting("Share of the baseline's probability mass spread uniformly over the buckets.", 0.01)
    alpha: float = setting("False-alarm level of the calibrated KL threshold (the tail of a Gamma fitted to windows "
                         "drawn from the baseline).", 0.001)
    n_bootstrap: int = setting("Windows drawn from the baseline (without replacement) to calibrate the threshold.",
                             200)
    margin: float = setting("Factor on the calibrated quantile.", 1.0)
    threshold: float | None = setting("Fixed KL threshold instead of calibration.", None)
    check_every: int = setting("Compute the divergence every this many events.", 5)
    surprise: str = setting("River detector on each event's surprise under the baseline word distribution (the "
                          "second signal: 'adwin', 'page-hinkley', 'kswin'; empty = KL only). No model pass.",
                          "adwin")
    seed: int = setting("Seed for the calibration draws.", 0)
    loss_detector: str = setting("Optional third signal: a river detector on per-event loss under the current "
                               "version ('adwin', 'page-hinkley', 'kswin'; empty = off). Costs one forward "
                               "pass per event.", "")

    def __post_init__(self) -> None:
        for name, low in (("window", 2), ("baseline_size", 4), ("check_every", 1), ("n_buckets", 2),
                          ("n_bootstrap", 2)):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= low, f"drift.{name}", value,
                    f"must be an integer >= {low}")
        require(0 < self.alpha < 1, "drift.alpha", self.alpha, "must be in (0, 1)")
        require(self.margin > 0, "drift.margin", self.margin, "must be positive")
        require(self.threshold is None or self.threshold > 0, "drift.threshold", self.threshold,
                "must be positive or unset")
        for name in ("loss_detector", "surprise"):
            require(getattr(self, name) in ("", "adwin", "page-hinkley", "kswin"), f"drift.{name}",
                   getattr(self, name), "must be empty, 'adwin', 'page-hinkley' or 'kswin'")
        require(0 < self.smoothing < 1, "drift.smoothing", self.smoothing, "must be in (0, 1)")
        require(self.baseline_size >= self.window, "drift.baseline_size", self.baseline_size,
               f"must be at least drift.window ({self.window})")

    def kl_params(self) -> dict[str, Any]:
        """The keyword arguments of :class:`learner.drift.kl.KLDriftDetector` these settings give."""
        names = ("window", "baseline_size", "n_buckets", "smoothing", "alpha", "n_bootstrap", "margin",
                 "threshold", "check_every", "surprise", "seed")
        return {name: getattr(self, name) for name in names}
