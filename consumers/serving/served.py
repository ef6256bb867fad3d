"""Which version each profile serves, kept on what its registry says: ``refresh`` reads the registries
and hands the engine the new set, which verifies each new version's files against its manifest (sha256)
before it loads them; a version that fails (a bad file, an engine that cannot load it) is not served,
the previous stays, one log line says why. Model-updated events and a slow poll of the registries both
call ``refresh``; it costs a read of each registry when nothing changed.

Request counts, failures and latency percentiles are kept here too (``metrics``).

>>> percentile([0.1, 0.2, 0.3, 0.4], 50), percentile([], 95)
(0.25, None)
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from consumers.serving.engines import EngineError, ServedVersion

__all__ = ["ServedModels", "percentile"]

logger = logging.getLogger("memstream.serve")

LATENCY_WINDOW = 10_000


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (numpy's, linear between ranks), None for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if values else None


class ServedModels:
    """The profiles ``memstream serve`` answers for, each at its registry's current version."""

    def __init__(self, state_dir: str | Path, profiles: list[str], engine, config=None):
        from learner.config import LearnerConfig

        self.state_dir = Path(state_dir)
        self.profiles = list(profiles)
        self.engine = engine
        self.config = config or LearnerConfig()
        self.served: dict[str, ServedVersion] = {}
        self.refused: dict[str, tuple[str, int | None]] = {}  # profile -> (why, version) not served
        self.swaps = 0
        self._refresh_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.requests = self.failures = 0
        self._latencies: list[float] = []

    def _wanted(self, profile: str) -> ServedVersion:
        from learner.store.registry import ModelRegistry
        from learner.store.versions import VERSION_EXPORTS, version_config

        try:
            registry = ModelRegistry.open(self.state_dir, profile, "", writer=False)
        except FileNotFoundError:  # nothing learned yet: the base answers until the first version
            return ServedVersion(profile, None, self.config, self.state_dir / profile)
        version = registry.current_version
        current = self.served.get(profile)
        if current is not None and current.version == version:
            return current  # a poll that finds nothing new reads nothing more
        config = version_config(registry, version, self.config)
        if version is None:
            return ServedVersion(profile, None, config, registry.directory)
        adapter = registry.version_dir(version) / VERSION_EXPORTS["gguf_lora"]
        return ServedVersion(profile, version, config, registry.directory, adapter if adapter.is_file() else None)

    def refresh(self) -> list[str]:
        """Bring every profile to its current version; returns the profiles that changed."""
        from learner.config import ConfigError
        from learner.store.registry import RegistryError
        from learner.store.storage import CorruptStateError

        with self._refresh_lock:
            wanted, changed = dict(self.served), []
            for profile in self.profiles:
                try:
                    one = self._wanted(profile)
                except (CorruptStateError, RegistryError, ConfigError, OSError, KeyError, ValueError) as exc:
                    self._refuse(profile, str(exc))
                    continue
                if self.served.get(profile) != one and self.refused.get(profile, ("", -1))[1] != one.version:
                    wanted[profile] = one
                    changed.append(profile)
            if not changed:
                return []
            if not self._switch(wanted, changed):
                # one bad version must not keep the others out: each alone over what is served
                changed = [p for p in changed if self._switch({**self.served, p: wanted[p]}, [p])]
            return changed

    def _switch(self, wanted: dict[str, ServedVersion], changed: list[str]) -> bool:
        try:
            self.engine.switch(wanted)
        except EngineError as exc:
            if len(changed) == 1:
                self._refuse(changed[0], str(exc), wanted[changed[0]].version)
            return False
        self.served = wanted
        for profile in changed:
            self.refused.pop(profile, None)
            self.swaps += 1
            logger.warning("serving %s", wanted[profile].label)
        return True

    def _refuse(self, profile: str, why: str, version: int | None = -1) -> None:
        if self.refused.get(profile, ("",))[0] != why:
            now = self.served.get(profile)
            logger.error("%s: %s; still serving %s", profile, why, now.label if now else "nothing")
        self.refused[profile] = (why, version)

    # -- requests --------------------------------------------------------------------------
    def chat(self, profile: str, body: dict[str, Any], on_chunk=None) -> dict | None:
        start = time.perf_counter()
        ok = False
        try:
            reply = self.engine.chat(profile, body, on_chunk)
            ok = True
            return reply
        finally:
            with self._stats_lock:
                self.requests += 1
                self.failures += not ok
                self._latencies.append(time.perf_counter() - start)
                del self._latencies[:-LATENCY_WINDOW]

    def metrics(self) -> dict[str, Any]:
        with self._stats_lock:
            latencies = list(self._latencies)
            requests, failures = self.requests, self.failures
        return {"engine": self.engine.name, "requests": requests, "failures": failures, "swaps": self.swaps,
                "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95),
                "serving": {p: one.version for p, one in sorted(self.served.items())},
                "refused": {p: why for p, (why, _v) in sorted(self.refused.items())}}
