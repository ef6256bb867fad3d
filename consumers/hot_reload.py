"""``AdapterHotReloader``: keep an inference model on the version a profile's registry says to serve.

The base model is loaded once (the first time it is needed), with the settings stored with the
version (``run.json``: which base, which LoRA shape), so an adapter trained on any base is
followed; every later version is swapped in place — the adapter's weights, not the base. On each
ModelUpdated event of its profile it reads the weight file once and checks its sha256 against
the event's (and every file against the version's manifest), and only then swaps; a file that
does not verify is refused with a clear error and the previous model stays. Rollbacks and resets
are followed too (a reset serves the original base); a copy of an event already applied (same
``id``, resent after a worker crash) changes nothing.

Paths in events are relative to the state directory, so a reloader that mounts the state
elsewhere (a synced copy, another container) passes its own ``state_dir``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

__all__ = ["AdapterHotReloader", "AdapterRefused"]

logger = logging.getLogger("memstream.hot_reload")


class AdapterRefused(RuntimeError):
    """An adapter that does not verify (sha256 mismatch, missing file, outside the state directory)."""


class AdapterHotReloader:
    """Hold the live inference model of ``profile`` and swap it on ModelUpdated events.

    Parameters
    ----------
    state_dir
        The worker's state directory (shared disk, or a synced copy).
    profile
        Whose model to serve.
    config
        Where to run it (``model.device``, ``model.dtype``, ``model.cache_dir``); which base and
        which adapter shape come from each version.
    on_swap
        Called with ``(version, model)`` after each swap.
    """

    def __init__(self, state_dir: str | Path, profile: str, config=None,
                 on_swap: Callable[[int | None, Any], None] | None = None):
        from learner.config import LearnerConfig
        from contracts.events import validate_profile
        from learner.memory.dedupe import SeenIds

        self.state_dir = Path(state_dir)
        self.profile = validate_profile(profile)
        self.config = config or LearnerConfig()
        self.on_swap = on_swap or (lambda _v, _m: None)
        self.version: int | None = None
        self.live = None  # an AdaptedModel once a version is loaded: the base is loaded once
        self.refused: list[tuple[int | None, str]] = []
        self.swaps = 0
        self._seen = SeenIds(10_000)

    @property
    def model(self):
        """The torch module to run (None before the first version)."""
        return self.live.model if self.live is not None else None

    def handle(self, event: dict[str, Any]) -> bool:
        """Apply one ModelUpdated event; True when the model was swapped."""
        if event.get("profile") != self.profile or not event.get("accepted"):
            return False
        event_id = str(event["id"]) if event.get("id") is not None else None
        if event_id is not None and event_id in self._seen:
            return False  # the same event again (resent after a crash)
        action = event.get("action", "train")
        version = event.get("version")
        if action == "train" and (not isinstance(version, int) or
                                  (self.version is not None and version <= self.version)):
            return False  # an older event than what is served
        try:
            self._swap(version, event)
        except AdapterRefused as exc:
            self.refused.append((version, str(exc)))
            logger.error("%s: keeping version %s: %s", self.profile, self.version, exc)
            return False
        if event_id is not None:
            self._seen.add(event_id)
        self.version = version
        self.swaps += 1
        self.on_swap(version, self.model)
        return True

    def _swap(self, version: int | None, event: dict[str, Any]) -> None:
        from learner.config import ConfigError
        from learner.store.registry import ModelRegistry, RegistryError
        from learner.store.storage import CorruptStateError
        from learner.store.versions import checkout, version_config

        if version is not None:
            self._check_file(version, event)
        try:
            registry = ModelRegistry.open(self.state_dir, self.profile, "", writer=False)
            if self.live is None:
                from learner.model.adapted import AdaptedModel

                trained = version if version is not None else (registry.kept_versions() or [None])[-1]
                config = version_config(registry, trained, self.config)
                self.live = AdaptedModel(config.model)
            checkout(self.live, registry, version)  # verifies every file of the version again
        except (CorruptStateError, RegistryError, ConfigError, OSError, KeyError, ValueError) as exc:
            raise AdapterRefused(f"version {version}: {exc}") from None

    def _check_file(self, version: int, event: dict[str, Any]) -> None:
        relative = str(event.get("adapter_path") or "")
        path = (self.state_dir / relative).resolve()
        try:
            path.relative_to((self.state_dir / self.profile).resolve())
        except ValueError:
            raise AdapterRefused(f"adapter path {relative!r} is outside the profile's state directory") from None
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise AdapterRefused(f"version {version}: cannot read {path}: {exc.strerror}") from None
        digest = hashlib.sha256(blob).hexdigest()
        if digest != event.get("sha256"):
            raise AdapterRefused(f"version {version}: sha256 of {path.name} is {digest[:12]}…, "
                                 f"the event says {str(event.get('sha256'))[:12]}…")

    def answer(self, prompts: list[str], **kwargs: Any) -> list[str]:
        """The served version's answers (asked in the format it was trained in)."""
        from learner.model.generation import answer

        if self.live is None:
            raise RuntimeError(f"no version of {self.profile!r} is loaded yet")
        return answer(self.live, prompts, **kwargs)

    def follow(self, subscriber, max_swaps: int | None = None, timeout_s: float | None = None) -> int:
        """Apply events from a :class:`consumers.subscriber.ModelUpdateSubscriber` until ``max_swaps``."""
        swaps = 0
        for event in subscriber.events(timeout_s=timeout_s):
            swaps += self.handle(event)
            if max_swaps is not None and swaps >= max_swaps:
                break
        return swaps
