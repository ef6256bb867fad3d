"""The evaluation gate: whether a trained version is kept, from its losses before and after."""

from __future__ import annotations

import math

from learner.store.versions import FOUNDATION

__all__ = ["judge"]


def judge(mode: str, probe_before: float, probe_after: float, new_before: float, new_after: float,
          tolerance: float, max_forgetting: float, gain_ratio: float,
          base: tuple[float, float, float] | None = None, probe_origin: float = math.nan) -> tuple[bool, str]:
    """The evaluation gate's verdict and its reason (losses in nats per token); ``base`` is the loss on
    the base model's held-out text before and after, and its tolerance; ``probe_origin`` the probe's loss
    without any adapter (what the old memories cost before they were learned).

    A LoRA run passes when the probe (old memories) lost at most ``tolerance`` of its loss, or when it
    learned ``gain_ratio`` times as many nats on its new memories as the probe lost **and** the probe
    lost at most ``max_forgetting`` of what it had learned since its origin (of its loss, without an
    origin). A relative rise alone is no measure on a well-learned probe: 0.17 → 0.60 nats is +250%,
    and still keeps 91% of the 5 nats the memories were learned by.

    >>> judge("lora", 0.174, 0.603, 5.2, 0.17, tolerance=0.05, max_forgetting=0.25, gain_ratio=5, probe_origin=5.17)
    (True, 'probe loss 0.174 -> 0.603 (+246.6%), 8.6% of what it had learned; new memories 5.200 -> 0.170: learned 11.7x what it lost')
    >>> judge("lora", 0.174, 2.5, 5.2, 0.17, 0.05, 0.25, 5, probe_origin=5.17)
    (False, 'forgetting: probe loss 0.174 -> 2.500 (+1336.8%), 46.6% of what it had learned, over the 25% limit')
    >>> judge("lora", 0.843, 0.934, 2.42, 2.30, tolerance=0.05, max_forgetting=0.25, gain_ratio=5)[0]
    False
    >>> judge("lora", 0.8, 0.8, 2.4, 0.2, 0.05, 0.25, 5, base=(2.0, 2.3, 0.05))
    (False, 'base text loss 2.000 -> 2.300 (+15.0%) is over the 5% limit: it would lose what the base could do')
    """
    if not math.isfinite(new_after) or (math.isfinite(probe_before) and not math.isfinite(probe_after)):
        return False, "non-finite loss after training"
    if base is not None and math.isfinite(base[0]):
        before, after, limit = base
        if not math.isfinite(after) or after > before * (1 + limit):
            return False, (f"base text loss {before:.3f} -> {after:.3f} ({after / before - 1:+.1%}) is over the "
                           f"{limit:.0%} limit: it would lose what the base could do")
    if mode == FOUNDATION:
        if probe_after < probe_before:
            return True, f"probe loss {probe_before:.3f} -> {probe_after:.3f}"
        return False, f"foundation did not lower the probe loss ({probe_before:.3f} -> {probe_after:.3f})"
    if not math.isfinite(probe_before):
        if new_after < new_before:
            return True, f"no old memories to forget yet; new memories {new_before:.3f} -> {new_after:.3f}"
        return False, f"the new memories were not learned ({new_before:.3f} -> {new_after:.3f})"
    rise = probe_after - probe_before
    relative = rise / probe_before if probe_before > 0 else math.inf
    probe = f"probe loss {probe_before:.3f} -> {probe_after:.3f} ({relative:+.1%})"
    if rise <= probe_before * tolerance:
        return True, f"{probe}, within the {tolerance:.0%} tolerance"
    learned_before = probe_origin - probe_before if math.isfinite(probe_origin) else 0.0
    if learned_before > 1e-6:
        lost = rise / learned_before
        probe += f", {lost:.1%} of what it had learned"
    else:
        lost = relative
    gain = new_before - new_after
    learned = f"new memories {new_before:.3f} -> {new_after:.3f}"
    if lost > max_forgetting:
        return False, f"forgetting: {probe}, over the {max_forgetting:.0%} limit"
    if gain >= gain_ratio * rise:
        return True, f"{probe}; {learned}: learned {gain / rise:.1f}x what it lost"
    return False, f"forgetting: {probe}; {learned}: learned only {max(gain, 0) / rise:.1f}x what it lost " \
                  f"(needs {gain_ratio:g}x)"
