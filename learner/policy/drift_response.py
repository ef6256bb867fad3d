"""What the learner does when drift is detected: ask for an early consolidation (the scheduler
waits for ``scheduler.after_drift`` events of the new distribution), and say so in the alert."""

from __future__ import annotations

from typing import Any, Callable

from learner.drift.report import DriftReport
from learner.memory.state import LearnerState

__all__ = ["respond_to_drift"]


def respond_to_drift(state: LearnerState, drift_report: DriftReport, ts: float, publish: bool,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """The DriftAlert of ``drift_report`` and what the learner does about it: with the state's
    ``scheduler.consolidate_on_drift`` it asks for an early run; the alert is remembered in ``state``
    (and queued in its outbox with ``publish``)."""
    profile = state.profile
    report = drift_report.to_dict()
    actions = ["rebase baseline after the next accepted consolidation",
               "recompute Fisher after the next consolidation"]
    if state.config.scheduler.consolidate_on_drift:
        state.scheduler.request("drift")
        actions.insert(0, "consolidate early")
    alert = {"v": 1, "profile": profile, "ts": ts, **report, "action": "; ".join(actions)}
    state.remember_alert(alert)
    if publish:
        state.outbox.add("drift-alerts", profile, alert, f"{profile}/drift/{report['detector']}/{state.events_seen}")
    log(f"[{profile}] drift ({report['detector']}): {report['divergence']:.4f} vs threshold {report['threshold']:.4f}")
    return alert
