"""``memstream export --state DIR --version N OUT``: a merged model for inference servers."""

from __future__ import annotations

from pathlib import Path

import click

from learner.export import export_merged
from learner.online import load_model_at, version_config
from learner.registry import ModelRegistry
from memstream.cli.common import config_options, echo_json, open_config, profile_option, resolve_profile, state_option


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@state_option()
@profile_option()
@config_options
@click.option("--version", type=int, default=None, help="Version to export (default: current).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_command(out: Path, state_dir: Path, profile: str | None, config_file, overrides, version: int | None,
                   as_json: bool) -> None:
    """Write a version as a plain Hugging Face model (adapter merged): safetensors, config, tokenizer."""
    name = resolve_profile(state_dir, profile)
    config = open_config(config_file, overrides)
    registry = ModelRegistry.open(state_dir, name, original_base_model=config.model.base, writer=False)
    version = registry.current_version if version is None else version
    if version is None:
        raise click.ClickException(f"profile {name!r} has no version yet: nothing to export")
    model = load_model_at(registry, version, version_config(registry, version, config))
    written = export_merged(model, out, {"profile": name, "version": version,
                                                             **registry.entry(version)})
    if as_json:
        echo_json({"out": str(out), "files": written})
    else:
        click.echo(f"exported {name} v{version} to {out} ({', '.join(sorted(written))})")
