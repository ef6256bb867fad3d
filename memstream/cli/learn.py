"""``memstream learn EVENTS.jsonl --state DIR``: feed a JSONL stream through the learner."""

from __future__ import annotations

import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from consumers.subscriber import format_measure
from contracts.events import MemoryEvent, read_jsonl
from memstream.cli.common import config_options, echo_json, open_config, state_option

MAX_ERRORS_SHOWN = 20


class GracefulStop:
    """SIGINT/SIGTERM set a flag instead of killing: the current event finishes, a consolidation in
    progress is abandoned (nothing written), state is saved, and the command exits 128 + signal."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> "GracefulStop":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class LearnSession:
    """One ``learn`` invocation: the learners by profile, counters and the summary."""

    def __init__(self, state_dir: Path, config, source: str | None, save_every: int, progress: tqdm | None,
                 should_stop=lambda: False):
        self.should_stop = should_stop
        self.state_dir = state_dir
        self.config = config
        self.source = source
        self.save_every = save_every
        self.progress = progress
        self.learners: dict = {}
        self.events = 0
        self.resumed_past = 0
        self.invalid: Counter[str] = Counter()
        self.errors_shown = 0
        self.consolidations: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.quality_dropped = 0
        self.stopped_run = False

    def log(self, message: str) -> None:
        (self.progress.write if self.progress is not None else lambda m: click.echo(m, err=True))(message)

    def learner(self, profile: str):
        from learner.online import OnlineLearner  # torch and river load only when a command learns

        if profile not in self.learners:
            learner = OnlineLearner.open(self.state_dir, profile, self.config, log=self.log)
            learner.should_stop = self.should_stop
            self.learners[profile] = learner
        return self.learners[profile]

    def bad_line(self, index: int, reason: str) -> None:
        self.invalid[reason.split(" (")[0]] += 1
        if self.errors_shown < MAX_ERRORS_SHOWN:
            self.log(f"memstream: skipped line {index + 1}: {reason}")
        elif self.errors_shown == MAX_ERRORS_SHOWN:
            self.log("memstream: (more bad lines skipped; counted in the summary)")
        self.errors_shown += 1

    def feed(self, index: int, event: MemoryEvent) -> None:
        from learner.positions import learn_at

        learner = self.learner(event.profile)
        step = learn_at(learner, self.source, index, event) if self.source is not None else learner.learn_one(event)
        if step is None:
            self.resumed_past += 1  # already in the saved state of this profile
            return
        if step.dropped:
            self.quality_dropped += 1
            self.log(f"memstream: line {index + 1} not learned: {step.quality}")
            return
        self.events += 1
        if step.drift is not None:
            self.alerts.append({"event_index": index, **step.drift})
        if step.consolidation is not None:
            self._record(index, step.consolidation)
        if self.save_every and self.events % self.save_every == 0:
            learner.save_state()

    def _record(self, index: int | None, result) -> None:
        if result.status == "stopped":
            self.stopped_run = True
            return
        self.consolidations.append({"event_index": index, "outcome": result.status, **result.report()})

    def save_all(self) -> None:
        for learner in self.learners.values():
            learner.save_state()

    def close(self) -> None:
        """Release every profile's writer lock."""
        for learner in self.learners.values():
            learner.close()

    def finish(self, consolidate_at_end: bool) -> None:
        for learner in self.learners.values():
            if consolidate_at_end:
                for result in learner.consolidate_runs("manual"):
                    self._record(None, result)
            learner.save_state()

    def summary(self, seconds: float) -> dict[str, Any]:
        profiles = {p: {"events_seen": l.events_seen, "current_version": l.registry.current_version,
                        "pending_new_events": len(l.recent), "reservoir": len(l.reservoir)}
                    for p, l in sorted(self.learners.items())}
        accepted = sum(1 for c in self.consolidations if c["accepted"])
        out = {
            "events": self.events,
            "skipped_already_learned": self.resumed_past,
            "invalid": sum(self.invalid.values()),
            "invalid_reasons": dict(self.invalid),
            "quality_dropped": self.quality_dropped,
            "consolidations": self.consolidations,
            "accepted": accepted,
            "rejected": len(self.consolidations) - accepted,
            "drift_alerts": self.alerts,
            "profiles": profiles,
            "seconds": round(seconds, 2),
        }
        if len(profiles) == 1:
            out["final_version"] = next(iter(profiles.values()))["current_version"]
        return out


def _loss_change(metrics: dict[str, Any], what: str, label: str) -> str:
    """``", LABEL a -> b"`` when the run measured both losses, else nothing (a first run has no probe).

    >>> _loss_change({"loss_probe_before": 2.5, "loss_probe_after": 2.25}, "probe", "probe loss")
    ', probe loss 2.500 -> 2.250'
    >>> _loss_change({"loss_probe_before": None, "loss_probe_after": None}, "probe", "probe loss")
    ''
    """
    before, after = metrics.get(f"loss_{what}_before"), metrics.get(f"loss_{what}_after")
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)):
        return ""
    return f", {label} {before:.3f} -> {after:.3f}"


def describe_run(run: dict[str, Any]) -> str:
    """One summary line for a run's report, whatever its outcome and whichever measures it has.

    >>> describe_run({"profile": "g", "event_index": None, "version": None, "mode": "lora", "trigger": "manual",
    ...               "outcome": "aborted", "reason": "non-finite loss", "duration_s": None, "metrics": {}})
    '  [g] end of input: lora (manual) -> no version, aborted (non-finite loss)'
    >>> describe_run({"profile": "g", "event_index": 23, "version": 1, "mode": "lora", "trigger": "count",
    ...               "outcome": "accepted", "accepted": True, "reason": "ok", "duration_s": 4.25,
    ...               "metrics": {"loss_new_before": 5.0, "loss_new_after": 0.5, "loss_probe_before": None}})
    '  [g] event 23: lora (count) -> v1, accepted, new memories 5.000 -> 0.500, 4.2s'
    """
    where = f"event {run['event_index']}" if run.get("event_index") is not None else "end of input"
    version = f"v{run['version']}" if run.get("version") else "no version"
    metrics = run.get("metrics") or {}
    measures = (_loss_change(metrics, "new", "new memories") + _loss_change(metrics, "probe", "probe loss")
                + _loss_change(metrics, "base", "base text loss"))
    outcome = run["outcome"] if run.get("accepted") or not run.get("reason") else f"{run['outcome']} ({run['reason']})"
    seconds = f", {run['duration_s']:.1f}s" if isinstance(run.get("duration_s"), (int, float)) else ""
    return f"  [{run['profile']}] {where}: {run['mode']} ({run['trigger']}) -> {version}, {outcome}{measures}{seconds}"


def print_summary(summary: dict[str, Any]) -> None:
    click.echo(f"events learned: {summary['events']}"
               + (f" (skipped {summary['skipped_already_learned']} already learned)"
                  if summary["skipped_already_learned"] else ""))
    if summary["invalid"]:
        reasons = ", ".join(f"{n}× {r}" for r, n in summary["invalid_reasons"].items())
        click.echo(f"bad lines skipped: {summary['invalid']} ({reasons})")
    if summary["quality_dropped"]:
        click.echo(f"trivial memories not learned (quality gate): {summary['quality_dropped']}")
    click.echo(f"consolidations: {len(summary['consolidations'])} "
               f"({summary['accepted']} accepted, {summary['rejected']} rejected)")
    for c in summary["consolidations"]:
        click.echo(describe_run(c))
    click.echo(f"drift alerts: {len(summary['drift_alerts'])}")
    for a in summary["drift_alerts"]:
        rose = [f["feature"] for f in a.get("top_features") or [] if f.get("direction") == "rose"][:4]
        click.echo(f"  [{a['profile']}] event {a['event_index']}: {a.get('detector', 'drift')} "
                   f"{format_measure(a.get('divergence'))} > {format_measure(a.get('threshold'))}; rose: {', '.join(rose) or '-'}")
    for profile, p in summary["profiles"].items():
        click.echo(f"profile {profile}: {p['events_seen']} events seen, current version {p['current_version']}")
    click.echo(f"took {summary['seconds']:.1f}s")


@click.command("learn")
@click.argument("events", type=click.Path(path_type=Path, allow_dash=True))
@state_option()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--save-every", default=200, show_default=True, help="Save learner state every N events.")
@click.option("--from-start", is_flag=True, help="Ignore the saved position in this file and read it all again.")
@click.option("--consolidate-at-end", is_flag=True, help="Consolidate what is left once the input ends.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def learn_command(events: Path, state_dir: Path, config_file, overrides, as_json: bool, save_every: int,
                  from_start: bool, consolidate_at_end: bool, progress: bool | None) -> None:
    """Feed a JSONL file of memory events (or - for stdin) through the learner.

    Consolidates whenever a trigger trips, prints a summary. Rerunning on the same file
    resumes after the last event the saved state covers.
    """
    config = open_config(config_file, overrides)
    stdin = str(events) == "-"
    if not stdin and not events.is_file():
        raise click.ClickException(f"events file {str(events)!r} does not exist")
    if not state_dir.exists():
        if not state_dir.parent.exists():
            raise click.ClickException(f"state directory {str(state_dir)!r} cannot be created: "
                                       f"{str(state_dir.parent)!r} does not exist")
        state_dir.mkdir()
    elif not state_dir.is_dir():
        raise click.ClickException(f"state directory {str(state_dir)!r} is not a directory")
    show_bar = sys.stderr.isatty() if progress is None else progress
    total = None
    if not stdin:
        with open(events, "rb") as fh:
            total = sum(1 for _ in fh)
    bar = tqdm(total=total, unit="ev", disable=not show_bar, file=sys.stderr, dynamic_ncols=True)
    source = None if stdin or from_start else f"file:{events.resolve()}"
    started = time.perf_counter()
    with GracefulStop() as stop:
        session = LearnSession(state_dir, config, source, save_every, bar if show_bar else None, stop.requested)
        try:
            for index, event, error in read_jsonl(None if stdin else events):
                bar.update(1)
                if error is not None:
                    session.bad_line(index, error)
                else:
                    session.feed(index, event)
                if stop.requested() or session.stopped_run:
                    break  # a stop request abandoned a consolidation: nothing of it was written
            else:
                session.finish(consolidate_at_end)
        finally:
            bar.close()
        if stop.requested():
            session.save_all()
            session.log(f"memstream: stopped by {signal.Signals(stop.signum).name}; state saved "
                        "(run again to go on where it stopped)")
        session.close()
    summary = session.summary(time.perf_counter() - started)
    summary["stopped"] = stop.requested()
    echo_json(summary) if as_json else print_summary(summary)
    if stop.requested():
        raise SystemExit(128 + stop.signum)
    if summary["invalid"] and not session.events and not session.resumed_past and not session.quality_dropped:
        click.echo(f"memstream: error: nothing learned: all {summary['invalid']} lines of the input were invalid",
                   err=True)
        raise SystemExit(1)
