"""``memstream generate --state DIR --prompt TEXT``: sample from a version of the model."""

from __future__ import annotations

from pathlib import Path

import click

from learner.generate import sample
from learner.online import load_model_at, version_config
from learner.registry import ModelRegistry
from memstream.cli.common import config_options, echo_json, open_config, profile_option, resolve_profile, state_option


@click.command("generate")
@state_option()
@profile_option()
@config_options
@click.option("--prompt", required=True, help="The question to answer.")
@click.option("--version", type=int, default=None, help="Version to sample from (default: current; 0 = original base).")
@click.option("--max-tokens", default=160, show_default=True, help="Most tokens (bytes for the default model) to add.")
@click.option("--temperature", default=0.8, show_default=True)
@click.option("--top-k", default=40, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print {profile, version, prompt, text} as JSON.")
def generate_command(state_dir: Path, profile: str | None, config_file, overrides, prompt: str, version: int | None,
                     max_tokens: int, temperature: float, top_k: int, seed: int, as_json: bool) -> None:
    """Sample an answer from the current (or a given) version, to see what the model learned."""
    name = resolve_profile(state_dir, profile)
    config = open_config(config_file, overrides)
    registry = ModelRegistry.open(state_dir, name, original_base_model=config.model.base, writer=False)
    if version is None:
        version = registry.current_version
    version = version or None
    model = load_model_at(registry, version, version_config(registry, version, config))
    text = sample(model, prompt, max_tokens, temperature, top_k, seed)
    if as_json:
        echo_json({"profile": name, "version": version, "prompt": prompt, "text": text})
    else:  # a terminal gets no control bytes (an untrained model emits any byte)
        click.echo("".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text))
