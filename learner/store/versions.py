"""What a version holds on disk, and how a model is put at a version.

A version directory (see :mod:`learner.store.registry` for how it is written) holds:

- ``model.safetensors`` + ``config.json`` — full weights (foundation versions of the byte model);
- ``adapter_model.safetensors`` + ``adapter_config.json`` — the LoRA adapter in peft's own format
  (``PeftModel.from_pretrained`` and multi-LoRA servers read the folder as it is);
- ``ewc.safetensors`` — the accumulated Fisher and its anchor;
- ``learner_state.json``, ``metrics.json``, ``run.json`` (the plan and the config: enough to redo it).

Every file is checked against the version's sha256 manifest before it is read.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from typing import TYPE_CHECKING, Any

from learner.config import ConfigError, LearnerConfig, ModelConfig
from learner.store.registry import ModelRegistry

if TYPE_CHECKING:
    from learner.model.adapted import AdaptedModel
    from learner.training.ewc import EWC
    from learner.training.plan import Plan, RunResult

__all__ = ["VERSION_EXPORTS", "ARCHITECTURE_KEYS", "FOUNDATION", "LORA", "adapter_files", "check_architecture", "checkout",
           "ewc_from_bytes", "history_entry", "json_bytes", "load_ewc", "load_model_at", "run_record", "version_config",
           "weight_file"]

#: The GGUF files a version may hold beside its weights, by the names ModelUpdated and the registry give them
#: (``registry.gguf_lora``, ``registry.gguf``; :mod:`learner.model.gguf_lora`).
VERSION_EXPORTS = {"gguf_lora": "adapter.gguf", "gguf": "model.gguf"}

FOUNDATION, LORA = "foundation", "lora"
#: model settings that change the shape of the weights: a version can only be loaded with its own
ARCHITECTURE_KEYS = ("base", "lora_r", "target_modules")
BYTE_MODEL_KEYS = ("d_model", "n_layers", "n_heads", "d_ff")
WEIGHT_FILES = {FOUNDATION: "model.safetensors", LORA: "adapter_model.safetensors"}


def weight_file(mode: str) -> str:
    """The file inference servers load for a version of ``mode``."""
    return WEIGHT_FILES[mode]


#: Model settings that belong to the machine that loads a version, not to the version.
LOCAL_MODEL_KEYS = ("device", "dtype", "cache_dir", "gradient_checkpointing")


def version_config(registry: ModelRegistry, version: int | None, fallback: LearnerConfig) -> LearnerConfig:
    """``fallback`` with the model settings a version was trained with (device, dtype, cache and gradient
    checkpointing stay local). Only the model section is read, and keys this memstream does not know are
    skipped: a reader keeps following versions written by a newer writer with more settings."""
    if version is None:
        return fallback
    run = json.loads(registry.read_file(version, "run.json"))
    known = {f.name for f in dataclasses.fields(ModelConfig)} - set(LOCAL_MODEL_KEYS)
    stored = {k: v for k, v in run["config"].get("model", {}).items() if k in known}
    try:
        return dataclasses.replace(fallback, model=dataclasses.replace(fallback.model, **stored))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"version {version}: its model settings are not readable: {exc}") from None


def check_architecture(config: LearnerConfig, registry: ModelRegistry) -> None:
    """Refuse settings whose weights would not fit the current version's."""
    current = registry.current_version
    if current is None:
        return
    trained = version_config(registry, current, config).model
    keys = ARCHITECTURE_KEYS + (BYTE_MODEL_KEYS if trained.is_byte_model else ())
    for key in keys:
        ours, theirs = getattr(config.model, key), getattr(trained, key)
        if ours != theirs:
            raise ConfigError(
                f"model.{key} = {ours!r} but version {current} of {registry.data['profile']!r} was trained "
                f"with {theirs!r}: use the same model settings, or `memstream registry reset` first")


def _load_tensors(registry: ModelRegistry, version: int, name: str):
    from safetensors.torch import load

    return load(registry.read_file(version, name))


def checkout(live: "AdaptedModel", registry: ModelRegistry | None, version: int | None) -> None:
    """Put ``version``'s weights (None: the original base) into ``live``, in place, verified first.

    Nothing is read when ``live`` already holds exactly that version."""
    if version is None or registry is None:
        if live.tag != ("base",):
            live.use_original_base()
            live.tag = ("base",)
        return
    manifest_sha = registry.entry(version).get("manifest_sha256")
    tag = (str(registry.directory), version, manifest_sha)
    if live.tag == tag:
        return
    live.tag = None  # half-loaded until the end
    registry.verify(version)
    entry = registry.entry(version)
    if entry["mode"] == FOUNDATION:
        live.load_base_state(_load_tensors(registry, version, "model.safetensors"), tag)
    else:
        base_version = entry.get("base_version")
        if base_version:
            registry.verify(base_version)
            base_tag = (str(registry.directory), base_version, registry.entry(base_version).get("manifest_sha256"))
            if live.base_tag != base_tag:
                live.load_base_state(_load_tensors(registry, base_version, "model.safetensors"), base_tag)
        else:
            live.use_original_base()
        adapter_config = json.loads(registry.read_file(version, "adapter_config.json"))
        live.load_adapter(adapter_config, _load_tensors(registry, version, "adapter_model.safetensors"))
    live.tag = tag


def load_model_at(registry: ModelRegistry | None, version: int | None, config: LearnerConfig) -> "AdaptedModel":
    """A new model at ``version`` (None = the original base), every file verified before it is read."""
    from learner.model.adapted import AdaptedModel

    live = AdaptedModel(config.model)
    checkout(live, registry, version)
    return live


def ewc_from_bytes(blob: bytes, config: LearnerConfig) -> "EWC":
    """EWC state from the bytes of an ``ewc.safetensors`` file (tensors and header metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load

    from learner.training.ewc import EWC

    with tempfile.NamedTemporaryFile(suffix=".safetensors") as fh:  # safe_open reads the header from a file
        fh.write(blob)
        fh.flush()
        with safe_open(fh.name, framework="pt") as handle:
            metadata = handle.metadata()
    return EWC.from_state(load(blob), metadata, lam=config.ewc.lam, gamma=config.ewc.gamma)


def load_ewc(registry: ModelRegistry | None, version: int | None, config: LearnerConfig) -> "EWC":
    """The EWC state saved with ``version`` (empty for the base or a version without one)."""
    from learner.training.ewc import EWC

    if registry is None or version is None or "ewc.safetensors" not in registry.verify(version):
        return EWC(config.ewc.lam, config.ewc.gamma)
    return ewc_from_bytes(registry.read_file(version, "ewc.safetensors"), config)


def adapter_files(live: "AdaptedModel", mode: str, ewc: "EWC") -> dict[str, bytes]:
    """The weight files of a new version: full model (foundation) or adapter plus EWC state (LoRA)."""
    from safetensors.torch import save

    files: dict[str, bytes] = {}
    if mode == FOUNDATION:
        files["model.safetensors"] = save(live.base_state(), metadata={"format": "pt"})
        files["config.json"] = live.base.model.config.to_json_string().encode("utf-8")
    else:
        files["adapter_model.safetensors"] = save(live.adapter_state(), metadata={"format": "pt"})
        files["adapter_config.json"] = json.dumps(live.adapter_config_dict(), indent=2).encode("utf-8")
        if ewc.fisher:
            files["ewc.safetensors"] = save(ewc.state_tensors(), metadata=ewc.state_metadata())
    return files


# -- what a run leaves in the registry -------------------------------------------------------------
def history_entry(registry: ModelRegistry, plan: "Plan", result: "RunResult") -> dict[str, Any]:
    """The registry's ``training_history`` entry of a finished run (accepted or not)."""
    base_version = base_version_for(registry, plan)
    return {
        "run_id": plan.run_id,
        "trigger": plan.trigger,
        "mode": plan.mode,
        "attempt": plan.attempt,
        "lr_scale": plan.lr_scale,
        "samples_trained": len(plan.train_events),
        "samples_new": len(plan.new),
        "samples_replay": len(plan.replay),
        "parent_version": plan.parent_version,
        "base_version": base_version,
        "base_model_used": (f"version {base_version}" if base_version else registry.original_base_model),
        "metrics": result.metrics,
        "steps": result.steps,
        "duration_s": result.duration_s,
        "reason": result.reason,
    }


def run_record(plan: "Plan", entry: dict[str, Any], profile: str, config: LearnerConfig) -> bytes:
    """A version's ``run.json``: its history entry, the events it saw (ids) and the config it was trained with."""
    run = {
        **{k: v for k, v in entry.items() if k != "metrics"},
        "profile": profile,
        "seed": plan.seed,
        "lr_scale": plan.lr_scale,
        "clock": plan.clock,
        "new_ids": [e.id for e in plan.new],
        "replay_ids": [e.id for e in plan.replay],
        "probe_ids": [e.id for e in plan.probe],
        "config": config.to_dict(),
    }
    return json_bytes(run)


def base_version_for(registry: ModelRegistry, plan: "Plan") -> int | None:
    """The foundation version a LoRA run's adapter sits on (None: the original base)."""
    if plan.mode == FOUNDATION or plan.parent_version is None:
        return None
    parent = registry.entry(plan.parent_version)
    return plan.parent_version if parent["mode"] == FOUNDATION else parent.get("base_version")


def json_bytes(data: Any, compact: bool = False) -> bytes:
    """JSON as written into a version (indented, sorted) or a state file (``compact``).

    >>> json_bytes({"b": 1, "a": [1, 2]}, compact=True)
    b'{"b":1,"a":[1,2]}'
    """
    if compact:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return json.dumps(data, indent=2, sort_keys=True).encode("utf-8")
