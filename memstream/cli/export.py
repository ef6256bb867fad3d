"""``memstream export --state DIR [--format safetensors|gguf|gguf-lora] OUT``: a version for inference servers.

The PEFT adapter folder of each version (``STATE/PROFILE/versions/vNNNN/``) loads as it is with
``peft`` and multi-LoRA servers; ``export`` writes the adapter merged into its base (a Hugging Face
folder, or one GGUF file), or the adapter alone as a GGUF adapter that llama.cpp and Ollama apply over
the base's GGUF. Beside a GGUF goes an Ollama ``Modelfile`` (``OUT`` with the suffix ``.Modelfile``),
and the ``ollama create`` line that loads it is printed.
"""

from __future__ import annotations

from pathlib import Path

import click

from memstream.cli.common import config_options, echo_json, open_config, profile_option, resolve_profile, state_option


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@state_option()
@profile_option()
@config_options
@click.option("--version", type=int, default=None, help="Version to export (default: current).")
@click.option("--format", "fmt", type=click.Choice(["safetensors", "gguf", "gguf-lora"]), default="safetensors",
              show_default=True, help="A Hugging Face folder, one GGUF file for llama.cpp / Ollama, or the "
                                      "version's LoRA adapter alone as a GGUF adapter (over the base's GGUF).")
@click.option("--quant", type=click.Choice(["f16", "q8_0"]), default="f16", show_default=True,
              help="GGUF weights: f16, or q8_0 (8-bit, about half the size).")
@click.option("--gguf-pre", default=None, help="llama.cpp pre-tokenizer name, for a base that did not come from a GGUF.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def export_command(out: Path, state_dir: Path, profile: str | None, config_file, overrides, version: int | None,
                   fmt: str, quant: str, gguf_pre: str | None, as_json: bool) -> None:
    """Write a version with its adapter merged: a Hugging Face folder (safetensors, config, tokenizer) or GGUF."""
    from learner.model.base_gguf import base_gguf
    from learner.model.export import export_gguf, export_merged
    from learner.model.gguf_lora import export_gguf_lora
    from learner.model.modelfile import write_modelfile
    from learner.store.registry import ModelRegistry
    from learner.store.versions import load_model_at, version_config

    name = resolve_profile(state_dir, profile)
    config = open_config(config_file, overrides)
    registry = ModelRegistry.open(state_dir, name, original_base_model=config.model.base, writer=False)
    version = registry.current_version if version is None else version
    if version is None:
        raise click.ClickException(f"profile {name!r} has no version yet: nothing to export")
    model = load_model_at(registry, version, version_config(registry, version, config))
    lineage = {"profile": name, "version": version, **registry.entry(version)}
    if fmt == "gguf":
        written = export_gguf(model, out, lineage, quant=quant, pre=gguf_pre)
    elif fmt == "gguf-lora":
        written = export_gguf_lora(model, out, lineage)
    else:
        written = export_merged(model, out, lineage)
    create = None
    if fmt.startswith("gguf"):
        modelfile = out.with_suffix(".Modelfile")
        stops = model.tokenizer.hf.convert_ids_to_tokens(list(model.encoder.stop_ids))
        base = base_gguf(model.cfg) if fmt == "gguf-lora" else out  # the weights it was trained over, in f16
        create = write_modelfile(modelfile, base, out if fmt == "gguf-lora" else None, model.tokenizer, stops)
    if as_json:
        echo_json({"out": str(out), "format": fmt, "files": written, "ollama_create": create})
    else:
        click.echo(f"exported {name} v{version} to {out} ({fmt}: {', '.join(sorted(written))})")
        if create:
            click.echo(f"Ollama: {create}")
