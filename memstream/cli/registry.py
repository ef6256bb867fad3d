"""``memstream registry list|show|rollback|reset``: the versions of a profile's model."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from learner.store.registry import ModelRegistry
from memstream.cli.common import echo_json, profile_option, resolve_profile, state_option


def _open(state_dir: Path, profile: str | None) -> ModelRegistry:
    """Read-only: changes nothing on disk, so it is safe while a learner writes."""
    name = resolve_profile(state_dir, profile)
    return ModelRegistry.open(state_dir, name, original_base_model="", writer=False)


def _change(state_dir: Path, profile: str | None, action: str, version: int | None, bootstrap: str | None) -> str:
    """Roll back or reset as the profile's one writer: the registry changes, the ModelUpdated event that
    tells inference servers goes into the profile's outbox with the state, and is published now when a
    broker is named (else by the worker, when it next opens the profile)."""
    from learner.config import LearnerConfig
    from learner.online import OnlineLearner
    from learner.store.versions import version_config

    name = resolve_profile(state_dir, profile)
    reader = ModelRegistry.open(state_dir, name, original_base_model="", writer=False)
    trained = reader.current_version or (reader.kept_versions() or [None])[-1]
    config = version_config(reader, trained, LearnerConfig()) if trained is not None else LearnerConfig()
    with OnlineLearner.open(state_dir, name, config, publish=True) as learner:
        learner.rollback(version) if action == "rollback" else learner.reset()
        if bootstrap is None:
            return "the event that tells inference servers waits in its outbox for the worker"
        from memstream.cli.common import open_stream_config
        from streams.publish import publish_outbox

        sent = publish_outbox(learner, open_stream_config(None, (), bootstrap).kafka)
        return f"published {sent} model-updated event(s) to {bootstrap}"


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@click.group("registry")
def registry_group() -> None:
    """List, inspect, roll back or reset a profile's model versions."""


@registry_group.command("list")
@state_option()
@profile_option()
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def list_command(state_dir: Path, profile: str | None, as_json: bool) -> None:
    """Every run with its lineage; * marks the current version."""
    registry = _open(state_dir, profile)
    if as_json:
        echo_json(registry.data)
        return
    current = registry.current_version
    click.echo(f"profile {registry.data['profile']}  base {registry.original_base_model}  "
               f"current {current if current is not None else 'base (no version)'}")
    for e in registry.history:
        mark = "*" if e.get("version") is not None and e["version"] == current else " "
        version = f"v{e['version']}" if e.get("version") else "-"
        parent = f"v{e['parent_version']}" if e.get("parent_version") else "base"
        flags = " (pruned)" if e.get("pruned") else ""
        click.echo(f"{mark} {version:>5}  {e.get('status', '?'):8}  {e.get('mode', '?'):10} "
                   f"{e.get('trigger', '?'):10} parent {parent:5}  samples {e.get('samples_trained', 0):5}  "
                   f"{_when(e['timestamp'])}  {e.get('reason', '')}{flags}")
    for a in registry.data.get("actions", []):
        target = f"v{a['to_version']}" if a.get("to_version") else "base"
        click.echo(f"  {_when(a['timestamp'])}  {a['action']} -> {target}")


@registry_group.command("show")
@click.argument("version", type=int)
@state_option()
@profile_option()
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def show_command(version: int, state_dir: Path, profile: str | None, as_json: bool) -> None:
    """One version's history entry, metrics and verified files."""
    registry = _open(state_dir, profile)
    entry = dict(registry.entry(version))
    entry["files"] = {} if entry.get("pruned") else registry.verify(version)
    entry["verified"] = not entry.get("pruned")
    if as_json:
        echo_json(entry)
        return
    for key in ("version", "status", "mode", "trigger", "parent_version", "base_model_used", "run_id",
                "samples_trained", "samples_new", "samples_replay", "steps", "duration_s", "reason",
                "output_model_path"):
        click.echo(f"{key:18} {entry.get(key)}")
    for key, value in sorted(entry.get("metrics", {}).items()):
        if isinstance(value, dict):  # a report (the run's memories): one line per field
            click.echo(f"  {key}")
            for field, inner in value.items():
                click.echo(f"    {field:20} {inner}")
            continue
        click.echo(f"  {key:22} {value:.4f}" if isinstance(value, float) else f"  {key:22} {value}")
    for name, digest in sorted(entry["files"].items()):
        click.echo(f"  {name:28} sha256 {digest[:16]}… ok")


_BOOTSTRAP = click.option("--bootstrap", default=None, metavar="HOST:PORT",
                          help="Publish the model-updated event to this broker now (else the worker does).")


@registry_group.command("rollback")
@click.argument("version", type=int)
@state_option()
@profile_option()
@_BOOTSTRAP
def rollback_command(version: int, state_dir: Path, profile: str | None, bootstrap: str | None) -> None:
    """Make a kept version current again (it is verified first)."""
    said = _change(state_dir, profile, "rollback", version, bootstrap)
    click.echo(f"profile {resolve_profile(state_dir, profile)}: current version is now v{version}; {said}")


@registry_group.command("reset")
@state_option()
@profile_option()
@_BOOTSTRAP
def reset_command(state_dir: Path, profile: str | None, bootstrap: str | None) -> None:
    """Go back to the original base model (history and kept versions stay)."""
    said = _change(state_dir, profile, "reset", None, bootstrap)
    click.echo(f"profile {resolve_profile(state_dir, profile)}: reset to the original base; {said}")
