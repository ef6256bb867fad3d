"""The whole learner config: one section per family (each defined beside its component), read from
defaults, one TOML file, the environment and flags.

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
learner.fields.ConfigError: unknown config key 'quality.mod' (known in [quality]: min_chars, mode)
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

from learner.drift.config import DriftConfig
from learner.fields import ConfigError
from learner.memory.config import ReplayConfig
from learner.model.config import ModelConfig
from learner.policy.config import QualityConfig, SchedulerConfig
from learner.store.config import RegistryConfig
from learner.training.config import EWCConfig, TrainConfig

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


@dataclass
class LearnerConfig:
    """Every section of the learner, each defined beside its component.

    >>> cfg = LearnerConfig.from_dict({"train": {"epochs": 2}})
    >>> cfg.train.epochs, cfg.model.base, LearnerConfig.from_dict(cfg.to_dict()) == cfg
    (2, 'smollm2-135m-instruct', True)
    """

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
