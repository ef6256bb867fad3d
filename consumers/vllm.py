"""Hand each new version to a vLLM server: on every accepted ModelUpdated event of a profile, vLLM is asked
to load the version's PEFT folder under the profile's name, replacing the one it has
(``POST /v1/load_lora_adapter {lora_name, lora_path, load_inplace: true}``); a reset unloads it
(``POST /v1/unload_lora_adapter``). The server must run with ``--enable-lora``, a ``--max-lora-rank`` at
least the adapters' rank, and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``; requests then name the profile
as their ``model``.

Before anything is sent, the version is verified against its manifest and its adapter config is checked
against what vLLM accepts, so a refusal is one clear line here rather than an error in the server's log.

>>> vllm_problem({"r": 16, "lora_alpha": 32, "modules_to_save": None}, max_lora_rank=16) is None
True
>>> print(vllm_problem({"r": 64}, max_lora_rank=16))
the adapter has rank 64, over the server's --max-lora-rank 16
>>> vllm_problem({"r": 8, "modules_to_save": ["lm_head"]}, max_lora_rank=16)
"vLLM loads LoRA factors only; this adapter also saves whole modules (['lm_head'])"
>>> vllm_problem({"r": 8}, max_lora_rank=24)
'--max-lora-rank 24 is not one vLLM allows (1, 8, 16, 32, 64, 128, 256, 320, 512)'
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["VLLM_MAX_LORA_RANKS", "HandoffRefused", "VllmHandoff", "vllm_problem"]

logger = logging.getLogger("memstream.vllm")

#: the values vLLM's ``--max-lora-rank`` may take (vllm/config/lora.py)
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class HandoffRefused(ValueError):
    """A version that is not sent (or that the server refused): the message says why."""


def vllm_problem(adapter_config: dict[str, Any], max_lora_rank: int) -> str | None:
    """Why vLLM would refuse an adapter with this PEFT config (None: it loads)."""
    if max_lora_rank not in VLLM_MAX_LORA_RANKS:
        return f"--max-lora-rank {max_lora_rank} is not one vLLM allows ({', '.join(map(str, VLLM_MAX_LORA_RANKS))})"
    if adapter_config.get("modules_to_save"):
        saved = adapter_config["modules_to_save"]
        return f"vLLM loads LoRA factors only; this adapter also saves whole modules ({saved})"
    ranks = [int(adapter_config.get("r") or 0), *map(int, (adapter_config.get("rank_pattern") or {}).values())]
    if max(ranks) > max_lora_rank:
        return f"the adapter has rank {max(ranks)}, over the server's --max-lora-rank {max_lora_rank}"
    if adapter_config.get("peft_type", "LORA") != "LORA":
        return f"vLLM loads LoRA adapters; this one is {adapter_config['peft_type']}"
    return None


class VllmHandoff:
    """Keep a vLLM server at ``url`` on each profile's newest version of ``state_dir``.

    ``served_state`` is where the vLLM server sees the state directory (its own mount), when not at
    the same path.
    """

    def __init__(self, url: str, state_dir: str | Path, max_lora_rank: int = 16, api_key: str | None = None,
                 served_state: str | None = None, timeout_s: float = 120.0):
        self.url = url.rstrip("/")
        self.state_dir = Path(state_dir)
        self.max_lora_rank = max_lora_rank
        self.api_key = api_key
        self.served_state = served_state
        self.timeout_s = timeout_s
        self.sent: dict[str, int | None] = {}  # profile -> version the server holds
        self.refused: list[tuple[str, int | None, str]] = []

    def _post(self, route: str, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + route, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return reply.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                text = json.loads(text).get("error", {}).get("message", text) if text.startswith("{") else text
            except ValueError:
                pass
            raise HandoffRefused(f"vLLM at {self.url} answered {exc.code} to {route}: {text[:300]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(f"no vLLM server answered at {self.url}: {getattr(exc, 'reason', exc)}") from None

    def lora_path(self, profile: str, version: int) -> str:
        """The version's PEFT folder, as the server sees it."""
        from learner.store.registry import version_name

        if self.served_state:
            return f"{self.served_state.rstrip('/')}/{profile}/versions/{version_name(version)}"
        return str((self.state_dir / profile / "versions" / version_name(version)).resolve())

    def send(self, profile: str, version: int | None) -> None:
        """Put ``profile`` at ``version`` on the server (None: unload it)."""
        from learner.store.registry import ModelRegistry

        if version is None:
            if self.sent.get(profile) is not None:
                self._post("/v1/unload_lora_adapter", {"lora_name": profile})
            self.sent[profile] = None
            return
        registry = ModelRegistry.open(self.state_dir, profile, "", writer=False)
        registry.verify(version)
        if registry.entry(version).get("mode") != "lora":
            raise HandoffRefused(f"{profile} v{version} holds full weights, not a LoRA adapter: export it instead")
        problem = vllm_problem(json.loads(registry.read_file(version, "adapter_config.json")), self.max_lora_rank)
        if problem is not None:
            raise HandoffRefused(f"{profile} v{version} is not sent to vLLM: {problem}")
        self._post("/v1/load_lora_adapter", {"lora_name": profile, "lora_path": self.lora_path(profile, version),
                                             "load_inplace": True})
        self.sent[profile] = version
        logger.warning("vLLM at %s serves %s v%s", self.url, profile, version)

    def handle(self, event: dict[str, Any]) -> bool:
        """Apply one ModelUpdated event; True when the server was told something new."""
        profile, version = event.get("profile"), event.get("version")
        if not event.get("accepted") or not isinstance(profile, str):
            return False
        if event.get("action", "train") == "reset":
            version = None
        if profile in self.sent and self.sent[profile] == version:
            return False
        from learner.store.registry import RegistryError
        from learner.store.storage import CorruptStateError

        try:
            self.send(profile, version)
        except (HandoffRefused, RegistryError, CorruptStateError) as exc:
            self.refused.append((profile, version, str(exc)))
            logger.error("%s", exc)
            return False
        return True

    def catch_up(self, profiles: list[str]) -> None:
        """Send each profile's current version (at start: versions made while nobody listened)."""
        from learner.store.registry import ModelRegistry

        for profile in profiles:
            current = ModelRegistry.open(self.state_dir, profile, "", writer=False).current_version
            if current is not None:
                self.handle({"profile": profile, "version": current, "accepted": True})
