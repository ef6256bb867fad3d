"""``memstream handoff vllm --url URL --state DIR``: keep a vLLM server on each profile's newest version."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from memstream.cli.common import bootstrap_option, config_options, open_stream_config, profiles_in, state_option


@click.group("handoff")
def handoff_group() -> None:
    """Hand every new version to an inference server as it is made."""


@handoff_group.command("vllm")
@click.option("--url", required=True, envvar="MEMSTREAM_VLLM_URL", show_envvar=True,
              help="The vLLM server (started with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).")
@state_option()
@click.option("--profile", "profiles", multiple=True, help="Profile to hand off (repeatable; default: every one).")
@click.option("--max-lora-rank", type=int, default=16, show_default=True, help="The server's --max-lora-rank.")
@click.option("--served-state", default=None,
              help="Where the vLLM server sees the state directory, when not at the same path.")
@click.option("--api-key", default=None, envvar="VLLM_API_KEY", show_envvar=True, help="The server's API key.")
@click.option("--group", default="memstream-vllm", show_default=True, help="Consumer group (a restart resumes).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Exit after this many idle seconds.")
@bootstrap_option()
@config_options
def vllm_command(url: str, state_dir: Path, profiles: tuple[str, ...], max_lora_rank: int, served_state: str | None,
                 api_key: str | None, group: str, timeout_s: float | None, bootstrap: str | None, config_file,
                 overrides) -> None:
    """Load each profile's current version into vLLM, then every new one (load_lora_adapter, in place)."""
    from consumers.subscriber import ModelUpdateSubscriber
    from consumers.vllm import VllmHandoff

    chosen = list(profiles) or profiles_in(state_dir)
    config = open_stream_config(config_file, overrides, bootstrap)
    logging.basicConfig(level=logging.WARNING, format="memstream handoff: %(message)s")
    handoff = VllmHandoff(url, state_dir, max_lora_rank=max_lora_rank, api_key=api_key, served_state=served_state)
    handoff.catch_up(chosen)
    with ModelUpdateSubscriber(config.kafka, group=group) as subscriber:
        try:
            subscriber.run(lambda _kind, event: event.get("profile") in chosen and handoff.handle(event),
                           timeout_s=timeout_s)
        except KeyboardInterrupt:
            pass
    click.echo(f"handed off: {', '.join(f'{p} v{v}' for p, v in sorted(handoff.sent.items())) or 'nothing'}"
               + (f"; refused: {len(handoff.refused)}" if handoff.refused else ""))
