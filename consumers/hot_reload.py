"""``AdapterHotReloader``: keep an inference model on the newest accepted version of a profile.

On each accepted ModelUpdated event of its profile it reads the weight file once, checks its
sha256 against the event's (and the version's manifest), and only then swaps the model in.
A file that does not verify is refused with a clear error, and the previous model stays.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

__all__ = ["AdapterHotReloader", "AdapterRefused"]

logger = logging.getLogger("memstream.hot_reload")


class AdapterRefused(RuntimeError):
    """An adapter that does not verify (sha256 mismatch, missing file, older version)."""


class AdapterHotReloader:
    """Hold the live inference model of ``profile`` and swap it on ModelUpdated events.

    Parameters
    ----------
    state_dir
        The worker's state directory (shared disk, or a synced copy).
    profile
        Whose model to serve.
    config
        The learner config the versions were trained with (default settings when omitted).
    on_swap
        Called with ``(version, model)`` after each swap.
    """

    def __init__(self, state_dir: str | Path, profile: str, config=None,
                 on_swap: Callable[[int, Any], None] | None = None):
        from learner.config import LearnerConfig

        self.state_dir = Path(state_dir)
        self.profile = profile
        self.config = config or LearnerConfig()
        self.on_swap = on_swap or (lambda _v, _m: None)
        self.version: int | None = None
        self.model = None  # an AdaptedModel once a version is loaded
        self.refused: list[tuple[int | None, str]] = []

    def handle(self, event: dict[str, Any]) -> bool:
        """Apply one ModelUpdated event; True when the model was swapped."""
        if event.get("profile") != self.profile or not event.get("accepted"):
            return False
        version = event.get("version")
        if not isinstance(version, int) or (self.version is not None and version <= self.version):
            return False
        try:
            model = self._load_verified(version, event)
        except AdapterRefused as exc:
            self.refused.append((version, str(exc)))
            logger.error("%s: keeping version %s: %s", self.profile, self.version, exc)
            return False
        self.model, self.version = model, version
        self.on_swap(version, model)
        return True

    def _load_verified(self, version: int, event: dict[str, Any]):
        from learner.online import load_model_at
        from learner.registry import ModelRegistry, RegistryError
        from learner.storage import CorruptStateError

        path = Path(str(event.get("adapter_path") or ""))
        try:
            path.resolve().relative_to((self.state_dir / self.profile).resolve())
        except ValueError:
            raise AdapterRefused(f"adapter path {str(path)!r} is outside the profile's state directory") from None
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise AdapterRefused(f"version {version}: cannot read {path}: {exc.strerror}") from None
        digest = hashlib.sha256(blob).hexdigest()
        if digest != event.get("sha256"):
            raise AdapterRefused(f"version {version}: sha256 of {path.name} is {digest[:12]}…, "
                                 f"the event says {str(event.get('sha256'))[:12]}…")
        try:
            registry = ModelRegistry.open(self.state_dir, self.profile, "", writer=False)
            return load_model_at(registry, version, self.config)  # verifies every file of the version again
        except (CorruptStateError, RegistryError, OSError, KeyError, ValueError) as exc:
            raise AdapterRefused(f"version {version}: {exc}") from None

    def follow(self, subscriber, max_swaps: int | None = None, timeout_s: float | None = None) -> int:
        """Apply events from a :class:`consumers.subscriber.ModelUpdateSubscriber` until ``max_swaps``."""
        swaps = 0
        for event in subscriber.events(timeout_s=timeout_s):
            swaps += self.handle(event)
            if max_swaps is not None and swaps >= max_swaps:
                break
        return swaps
