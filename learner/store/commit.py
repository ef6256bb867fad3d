"""Committing a run: the version it makes, or the record of why it made none, the learner state
that goes with either, and the ModelUpdated events the registry's changes owe the stream.

The order is the one that keeps state whole: the version directory (weights, EWC state, run record,
metrics and the learner state as of the version) is committed by the registry first; the live state
file follows. A crash between the two leaves a version whose own snapshot the learner restores.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from learner.drift.kl import DRIFTED
from learner.memory.state import STATE_FILE, LearnerState, write_state
from learner.store.registry import ModelRegistry
from learner.store.storage import sha256_bytes
from learner.store.versions import VERSION_EXPORTS, history_entry, json_bytes, run_record, weight_file
from learner.training.plan import Plan, RunResult

if TYPE_CHECKING:
    from learner.config import LearnerConfig

__all__ = ["action_event", "checkpoint_failed", "record_run"]


def record_run(registry: ModelRegistry, state: LearnerState, plan: Plan, result: RunResult, config: LearnerConfig,
               publish: bool, log: Callable[[str], None]) -> None:
    """Write what a computed run leaves: for an accepted run the new version (its files, the run record,
    its metrics and the learner state, committed by the registry) and then the live state; for any other
    the run in the history and the state. Its new events leave the recent buffer, except those of a
    first attempt that was rejected or aborted: they get one more run, due at once. ``publish``
    queues the run's ModelUpdated event in the state's outbox."""
    profile = registry.data["profile"]
    new_ids = {e.id for e in plan.new} | {e.id for e in plan.probe}
    give_back = result.status in ("rejected", "aborted") and plan.attempt == 1
    if give_back:
        state.retried |= {e.id for e in state.recent.items if e.id in new_ids}
        covered = 0  # the events stay new for one more run
    else:
        covered = state.recent.remove_where(lambda e: e.id in new_ids)
        state.retried -= new_ids
    state.scheduler.mark_consolidated(plan.clock, examples_covered=covered)
    if give_back:
        state.scheduler.retry(plan.trigger)
    if result.accepted:
        if state.drift is not None and state.drift.state == DRIFTED:
            state.drift.rebase()  # the run that covered the new distribution was accepted
        if state.loss_monitor is not None:
            state.loss_monitor.reset()  # a new version: the loss signal starts afresh
    info = history_entry(registry, plan, result)
    state.seq += 1
    if result.accepted:
        version = registry.data["versioning"]["next_version"]
        result.version = version
        weights = weight_file(plan.mode)
        result.adapter_path = f"{profile}/versions/v{version:04d}/{weights}"
        result.sha256 = sha256_bytes(result.files[weights])
        result.exports = {key: {"path": f"{profile}/versions/v{version:04d}/{name}", "sha256": sha256_bytes(data),
                                "bytes": len(data)}
                          for key, name in VERSION_EXPORTS.items() if (data := result.files.get(name)) is not None}
        info["exports"] = result.exports
        _queue_update(state, profile, result, publish)
        files = dict(result.files)
        files["run.json"] = run_record(plan, info, profile, config.learner_config())
        files["metrics.json"] = json_bytes(result.metrics)
        snapshot = state.snapshot()
        files[STATE_FILE] = json_bytes(snapshot, compact=True)
        committed = registry.commit_version(files, info)
        if committed != version:
            raise RuntimeError(f"the registry committed version {committed}, expected {version}")
        write_state(registry.directory, snapshot)
        trainer = sys.modules.get("learner.training.trainer")
        if trainer is not None:  # a trainer in this process (memstream learn, a notebook) holds these weights:
            # say so; a process that trains elsewhere (the stream worker) never imports torch for it
            trainer.adopt_trained_weights(config.model, registry, plan, committed)
        log(f"[{profile}] version {committed} accepted: {result.reason}")
    else:
        registry.record_run(info, result.status)
        _queue_update(state, profile, result, publish)
        write_state(registry.directory, state.snapshot())
        again = " (its new events get one more run)" if give_back else ""
        log(f"[{profile}] run {result.status}: {result.reason}{again}")
    result.files = None  # written: the bytes are no longer needed


def _queue_update(state: LearnerState, profile: str, result: RunResult, publish: bool) -> None:
    if publish:
        event = {"v": 1, **result.report(), "action": "train"}
        state.outbox.add("model-updated", profile, event, f"{profile}/run/{result.run_id}")


def checkpoint_failed(registry: ModelRegistry, state: LearnerState, result: RunResult, before: dict[str, Any],
                      exc: OSError, log: Callable[[str], None]) -> None:
    """Writing the run's result failed (disk full, read-only): memory goes back to what the disk
    says, the current version stays, the new events wait for the next run."""
    state.restore(before)  # a model trained in this process keeps its "trained" tag: reloaded on next use
    current = registry.current_version
    why = exc.strerror or str(exc)
    result.status = "checkpoint_failed"
    result.reason = (f"checkpoint failed: {why} ({exc.filename or 'state directory'}); "
                     f"version {current} stays current, the new events wait for the next run")
    result.version = result.adapter_path = result.sha256 = None
    result.files = None  # the caller says so (the worker publishes it at once: it is not state)
    log(f"[{registry.data['profile']}] {result.reason}")


def action_event(registry: ModelRegistry, action: str, version: int | None) -> dict[str, Any]:
    """The ModelUpdated event of a rollback or reset: the version inference should serve now
    (None and no adapter: the original base)."""
    entry = registry.entry(version) if version is not None else {}
    profile = registry.data["profile"]
    adapter_path, sha = None, None
    if version is not None:
        weights = weight_file(entry["mode"])
        adapter_path = f"{profile}/versions/v{version:04d}/{weights}"
        sha = registry.verify(version)[weights]
    return {"v": 1, "profile": profile, "action": action, "version": version, "parent_version": None,
            "run_id": None, "ts": time.time(), "base_model": registry.original_base_model,
            "adapter_path": adapter_path, "sha256": sha, "trigger": "manual", "mode": entry.get("mode"),
            "samples_new": 0, "samples_replay": 0, "steps": 0, "duration_s": 0.0, "metrics": {}, "accepted": True,
            "status": "accepted", "reason": f"{action} to {'v' + str(version) if version else 'the original base'}"}
