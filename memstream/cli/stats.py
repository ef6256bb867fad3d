"""``memstream stats``: what a profile's memories are like, and what its last runs trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from memstream.cli.common import echo_json, profiles_in, resolve_profile, state_option


def _profiles(state_dir: Path, profile: str | None) -> list[str]:
    return [resolve_profile(state_dir, profile)] if profile is not None else profiles_in(state_dir)


def profile_stats(state_dir: Path, profile: str, runs: int = 3) -> dict[str, Any]:
    """The profile's memory report (from its newest state) and the reports of its last ``runs`` runs."""
    from learner.memory.curator import MemoryCounts
    from learner.memory.state import read_newest_state
    from learner.store.registry import ModelRegistry

    registry = ModelRegistry.open(state_dir, profile, original_base_model="", writer=False)
    state = read_newest_state(state_dir / profile, registry) or {}
    history = registry.history[-runs:] if runs else []
    return {"profile": profile, "events_seen": state.get("events_seen", 0),
            "memories": MemoryCounts(state.get("memories")).report(),
            "runs": [{"run_id": e.get("run_id"), "version": e.get("version"), "status": e.get("status"),
                      "memories": (e.get("metrics") or {}).get("memories")} for e in history]}


def _describe(report: dict[str, Any]) -> str:
    if not report.get("memories"):
        return "no memories counted"
    lengths = ", ".join(f"{name} {report[name]} ({report[f'{name}_share']:.0%})" for name in ("short", "medium", "long"))
    kinds = ", ".join(f"{kind} {n}" for kind, n in report["kinds"].items())
    return (f"{report['memories']} memories: {lengths}; acknowledgements {report['acknowledgements']}, "
            f"filler {report['filler']} ({report['noise_share']:.0%} in all); {kinds}")


@click.command("stats")
@state_option()
@click.option("--profile", default=None, help="One profile (default: every profile in the state directory).")
@click.option("--runs", type=int, default=3, show_default=True, help="How many of the last runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def stats_command(state_dir: Path, profile: str | None, runs: int, as_json: bool) -> None:
    """What each profile's memories are like (lengths, acknowledgements and filler, kinds), with warnings,
    and the same for what its last runs trained on."""
    reports = [profile_stats(state_dir, name, runs) for name in _profiles(state_dir, profile)]
    if as_json:
        echo_json(reports)
        return
    for report in reports:
        click.echo(f"profile {report['profile']}: {report['events_seen']} events learned; "
                   + _describe(report["memories"]))
        for warning in report["memories"]["warnings"]:
            click.echo(f"  warning: {warning}")
        for run in report["runs"]:
            if run["memories"] is None:
                continue
            version = f"v{run['version']}" if run["version"] is not None else "no version"
            click.echo(f"  run {run['run_id']} ({run['status']}, {version}): new " + _describe(run["memories"]))
            for warning in run["memories"]["warnings"]:
                click.echo(f"    warning: {warning}")
