"""``memstream generate --state DIR --prompt TEXT``: ask a version of the model, to see what it learned.

Questions are asked in the format the version was trained in (the chat template of a chat model).
``--prompts FILE`` asks many in one model load: one question per line (or JSON lines with a
``prompt`` field; ``-`` reads stdin), one JSON object per answer on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from memstream.cli.common import config_options, echo_json, open_config, profile_option, resolve_profile, state_option


def _read_prompts(source: Path) -> list[str]:
    text = sys.stdin.read() if str(source) == "-" else source.read_text(encoding="utf-8")
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise click.ClickException(f"{source}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise click.ClickException(f"{source}:{number}: a JSON line needs a string field 'prompt'")
            prompts.append(item["prompt"])
        else:
            prompts.append(line.strip())
    if not prompts:
        raise click.ClickException(f"{source}: no prompts in it")
    return prompts


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)


@click.command("generate")
@state_option()
@profile_option()
@config_options
@click.option("--prompt", default=None, help="The question to answer.")
@click.option("--prompts", "prompts_file", type=click.Path(path_type=Path, allow_dash=True), default=None,
              help="A file of questions (a line each, or JSON lines with 'prompt'; - for stdin): JSON lines out.")
@click.option("--version", type=int, default=None, help="Version to ask (default: current; 0 = original base).")
@click.option("--max-tokens", default=96, show_default=True, help="Most tokens (bytes for the byte model) to add.")
@click.option("--temperature", default=0.0, show_default=True, help="0: greedy (the same answer every time).")
@click.option("--top-k", default=40, show_default=True, help="Sampling from the k likeliest tokens (temperature > 0).")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print {profile, version, prompt, text} as JSON.")
def generate_command(state_dir: Path, profile: str | None, config_file, overrides, prompt: str | None,
                     prompts_file: Path | None, version: int | None, max_tokens: int, temperature: float,
                     top_k: int, seed: int, as_json: bool) -> None:
    """Answer a question (or a file of them) with the current (or a given) version."""
    from learner.model.generation import answer
    from learner.store.registry import ModelRegistry
    from learner.store.versions import load_model_at, version_config

    if (prompt is None) == (prompts_file is None):
        raise click.ClickException("give --prompt TEXT or --prompts FILE (one of them)")
    if prompts_file is not None and str(prompts_file) != "-" and not prompts_file.is_file():
        raise click.ClickException(f"prompts file {str(prompts_file)!r} does not exist")
    questions = [prompt] if prompt is not None else _read_prompts(prompts_file)
    name = resolve_profile(state_dir, profile)
    config = open_config(config_file, overrides)
    registry = ModelRegistry.open(state_dir, name, original_base_model=config.model.base, writer=False)
    if version is None:
        version = registry.current_version
    version = version or None
    trained = version if version is not None else (registry.kept_versions() or [None])[-1]  # whose base
    model = load_model_at(registry, version, version_config(registry, trained, config))
    texts = answer(model, questions, max_tokens, temperature, top_k, seed)
    if prompts_file is not None or as_json:
        for question, text in zip(questions, texts):
            echo_json({"profile": name, "version": version, "prompt": question, "text": text})
    else:  # a terminal gets no control bytes (an untrained byte model emits any byte)
        click.echo(_printable(texts[0]))
