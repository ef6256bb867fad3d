"""What every command shares: state/profile options, config loading, clean errors."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from learner.config import ConfigError, LearnerConfig, load_config
from contracts.events import InvalidEvent, validate_profile
from learner.store.lock import ProfileLocked
from learner.store.registry import REGISTRY_FILE, RegistryError
from learner.store.storage import CorruptStateError
from streams.broker import BrokerStartError
from streams.compat import CompatError

__all__ = ["run_cleanly", "state_option", "profile_option", "config_options", "resolve_profile",
           "open_config", "open_stream_config", "bootstrap_option", "echo_json", "existing_state_dir",
           "log_line", "stamped"]

USER_ERRORS = (ConfigError, InvalidEvent, RegistryError, CorruptStateError, ProfileLocked, FileNotFoundError,
               NotADirectoryError, PermissionError, ValueError, ConnectionError, BrokerStartError, CompatError)


def run_cleanly(command: click.Command, argv: list[str]) -> int:
    """Run a click command; user errors become one line on stderr and exit code 2."""
    try:
        command.main(args=argv, prog_name="memstream", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("memstream: aborted", err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"memstream: error: {exc.format_message()}", err=True)
        return 2  # bad input, like every user error
    except USER_ERRORS as exc:
        if os.environ.get("MEMSTREAM_DEBUG"):
            raise
        message = str(exc) if not isinstance(exc, FileNotFoundError) or not exc.filename else (
            f"{exc.filename}: no such file or directory")
        click.echo(f"memstream: error: {message}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("memstream: interrupted", err=True)
        return 130
    return 0


def state_option(required: bool = True):
    return click.option("--state", "state_dir", type=click.Path(path_type=Path), required=required,
                        envvar="MEMSTREAM_STATE", show_envvar=True,
                        help="State directory (one subdirectory per profile).")


def profile_option():
    return click.option("--profile", default=None, envvar="MEMSTREAM_PROFILE", show_envvar=True,
                        help="Profile to act on (default: the only one in the state directory).")


def config_options(func):
    func = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                        help="Override one config value (repeatable).")(func)
    func = click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                        envvar="MEMSTREAM_CONFIG", show_envvar=True, help="TOML config file.")(func)
    return func


def open_config(config_file: Path | None, overrides: tuple[str, ...]) -> LearnerConfig:
    """The learning sections of the config (a file may also hold the worker's sections)."""
    return open_stream_config(config_file, overrides).learner_config()


def open_stream_config(config_file: Path | None, overrides: tuple[str, ...], bootstrap: str | None = None):
    """Every section: learning, ``kafka`` and ``worker`` (``bootstrap`` overrides ``kafka.bootstrap``)."""
    from streams.settings import StreamConfig

    extra = [f"kafka.bootstrap={bootstrap}"] if bootstrap else []
    return load_config(config_file, list(overrides) + extra, root=StreamConfig)


def bootstrap_option():
    return click.option("--bootstrap", default=None, metavar="HOST:PORT",
                        help="Kafka broker address(es) (default: kafka.bootstrap, env MEMSTREAM_KAFKA_BOOTSTRAP).")


def existing_state_dir(state_dir: Path) -> Path:
    if not state_dir.exists():
        raise click.ClickException(f"state directory {str(state_dir)!r} does not exist")
    if not state_dir.is_dir():
        raise click.ClickException(f"state directory {str(state_dir)!r} is not a directory")
    return state_dir


def profiles_in(state_dir: Path) -> list[str]:
    """Every profile under ``state_dir`` (a directory with a registry), by name; at least one."""
    existing_state_dir(state_dir)
    found = sorted(p.name for p in state_dir.iterdir() if (p / REGISTRY_FILE).is_file())
    if not found:
        raise click.ClickException(f"no profile found under {str(state_dir)!r} (run `memstream learn` first)")
    return found


def resolve_profile(state_dir: Path, profile: str | None) -> str:
    """The profile named, or the only profile under ``state_dir``."""
    existing_state_dir(state_dir)
    if profile is not None:
        validate_profile(profile)
        if not (state_dir / profile / REGISTRY_FILE).is_file():
            raise click.ClickException(f"profile {profile!r} has no registry under {str(state_dir)!r}")
        return profile
    found = profiles_in(state_dir)
    if len(found) > 1:
        raise click.ClickException(f"several profiles under {str(state_dir)!r} ({', '.join(found)}): pass --profile")
    return found[0]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=None, sort_keys=True, default=str))


def stamped(message: str, now: datetime | None = None) -> str:
    """``message`` after the local time it is said at, as faust stamps its own lines in the same log.

    >>> stamped("left group memstream", now=datetime(2026, 12, 7, 7, 31, 49, 768_000))
    '[2026-12-07 07:31:49,768] left group memstream'
    """
    now = now or datetime.now()
    return f"[{now:%Y-%m-%d %H:%M:%S},{now.microsecond // 1000:03d}] {message}"


def log_line(message: str) -> None:
    """A long-running command's log line, on stderr with its time."""
    click.echo(stamped(message), err=True)
