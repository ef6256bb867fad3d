"""Per-profile model registry: versions, lineage, rollback, reset, pruning.

Layout of one profile directory::

    registry.json                 original_base_model, current_version, training_history, versioning
    versions/v0001/               one directory per accepted version, written atomically
        model.safetensors         full weights (foundation versions) + config.json
        adapter_model.safetensors LoRA weights (LoRA versions) + adapter_config.json (peft format)
        ewc.safetensors           accumulated Fisher and anchor (LoRA versions)
        learner_state.json        reservoir, drift baseline, scheduler counters at this version
        metrics.json  run.json    what the run measured; its plan and config (to reproduce it)
        manifest.json             sha256 of every file above

A version directory is written to a temp directory and renamed into place; the registry
file is then replaced atomically. That replacement is the commit point: a directory that
the registry does not list (a crash between the two) is removed when the registry opens.
``manifest_sha256`` in the history pins the manifest, so any changed byte is detected.

Examples
--------
>>> import tempfile
>>> reg = ModelRegistry.open(tempfile.mkdtemp(), "alice", "memstream-byte")
>>> v = reg.commit_version({"weights.bin": b"abc"}, {"run_id": "r1", "mode": "foundation",
...                        "samples_trained": 3, "trigger": "manual"})
>>> v, reg.current_version, reg.verify(1)["weights.bin"][:8]
(1, 1, 'ba7816bf')
>>> reg.reset(); reg.current_version is None
True
>>> reg.rollback(1); reg.current_version
1
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from contracts.events import validate_profile
from learner.failpoints import failpoint
from learner.store.lock import lease_of
from learner.store.storage import (
    CorruptStateError,
    atomic_write_json,
    read_json,
    sha256_bytes,
    sha256_file,
    write_dir_atomically,
)

__all__ = ["ModelRegistry", "RegistryError", "REGISTRY_FILE"]

REGISTRY_FILE = "registry.json"
MANIFEST = "manifest.json"
FORMAT = 1


class RegistryError(ValueError):
    """A registry request that cannot be done (unknown or pruned version, …)."""


def version_name(version: int) -> str:
    return f"v{version:04d}"


class ModelRegistry:
    """The versions of one profile's model."""

    def __init__(self, directory: Path, data: dict[str, Any]):
        self.directory = Path(directory)
        self.data = data

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def open(cls, state_root: str | Path, profile: str, original_base_model: str,
             keep_versions: int | None = None, writer: bool = True) -> "ModelRegistry":
        """Open (or create) the registry of ``profile`` under ``state_root``.

        A ``writer`` (who must hold the profile's lock) also removes what a crashed writer
        left uncommitted; a reader changes nothing on disk.
        """
        directory = Path(state_root) / validate_profile(profile)
        path = directory / REGISTRY_FILE
        if path.exists():
            data = read_json(path)
            if data.get("format") != FORMAT:
                raise CorruptStateError(f"{path}: unknown registry format {data.get('format')!r}")
        elif not writer:
            raise FileNotFoundError(2, "no registry", str(path))
        else:
            data = {
                "format": FORMAT,
                "profile": profile,
                "original_base_model": original_base_model,
                "current_version": None,
                "training_history": [],
                "actions": [],
                "versioning": {"keep_versions": keep_versions or 4, "next_version": 1,
                               "directory_pattern": "versions/v{version:04d}"},
            }
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, data)
        registry = cls(directory, data)
        if keep_versions is not None:
            registry.data["versioning"]["keep_versions"] = keep_versions
        if writer:
            registry._remove_uncommitted()
        return registry

    def _remove_uncommitted(self) -> None:
        for leftover in self.directory.glob(".*.tmp"):  # an atomic write cut short before its rename
            leftover.unlink(missing_ok=True)
        versions = self.directory / "versions"
        if not versions.is_dir():
            return
        committed = {version_name(e["version"]) for e in self.history if e.get("version") and not e.get("pruned")}
        for child in versions.iterdir():
            if child.name.startswith(".tmp-") or (child.is_dir() and child.name not in committed):
                shutil.rmtree(child, ignore_errors=True)

    # -- reading -----------------------------------------------------------------------
    @property
    def history(self) -> list[dict[str, Any]]:
        return self.data["training_history"]

    @property
    def current_version(self) -> int | None:
        return self.data["current_version"]

    @property
    def original_base_model(self) -> str:
        return self.data["original_base_model"]

    def entry(self, version: int) -> dict[str, Any]:
        for e in self.history:
            if e.get("version") == version:
                return e
        raise RegistryError(f"version {version} is not in the registry of {self.directory.name!r}")

    def version_dir(self, version: int) -> Path:
        return self.directory / "versions" / version_name(version)

    def kept_versions(self) -> list[int]:
        return [e["version"] for e in self.history if e.get("version") and not e.get("pruned")]

    def verify(self, version: int) -> dict[str, str]:
        """Check every file of a version against its manifest; return the manifest."""
        entry = self.entry(version)
        if entry.get("pruned"):
            raise RegistryError(f"version {version} was pruned (kept: {self.kept_versions()})")
        directory = self.version_dir(version)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise CorruptStateError(f"version {version}: {manifest_path} is missing")
        if sha256_file(manifest_path) != entry["manifest_sha256"]:
            raise CorruptStateError(f"version {version}: manifest.json does not match the registry's checksum")
        manifest = read_json(manifest_path)
        for name, expected in manifest.items():
            file = directory / name
            if not file.is_file():
                raise CorruptStateError(f"version {version}: {name} is missing")
            if sha256_file(file) != expected:
                raise CorruptStateError(f"version {version}: {name} fails its sha256 check (changed on disk)")
        return manifest

    def read_file(self, version: int, name: str) -> bytes:
        return (self.version_dir(version) / name).read_bytes()

    # -- writing -----------------------------------------------------------------------
    def _save(self) -> None:
        atomic_write_json(self.directory / REGISTRY_FILE, self.data)

    def _history_entry(self, info: dict[str, Any]) -> dict[str, Any]:
        entry = {
            "version": None,
            "run_id": info.get("run_id"),
            "timestamp": time.time(),
            "base_model_used": info.get("base_model_used", self.original_base_model),
            "output_model_path": None,
            "samples_trained": info.get("samples_trained", 0),
            "training_success": False,
            "parent_version": self.current_version,
            "writer": {"lease": lease_of(self.directory), "pid": os.getpid()},  # whose hold wrote it
        }
        entry.update({k: v for k, v in info.items() if k not in entry or entry[k] is None})
        return entry

    def commit_version(self, files: dict[str, bytes], info: dict[str, Any]) -> int:
        """Write a new version (files + manifest) and make it current. Returns its number."""
        version = self.data["versioning"]["next_version"]
        files = dict(files)
        manifest = {name: sha256_bytes(data) for name, data in files.items()}
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        files[MANIFEST] = manifest_bytes
        target = self.version_dir(version)
        if target.exists():  # an uncommitted leftover of a crashed run with this number
            shutil.rmtree(target)
        write_dir_atomically(target, files)
        before = copy.deepcopy(self.data)
        try:
            failpoint("registry.commit", str(target))
            entry = self._history_entry(info)
            entry.update({
                "version": version,
                "output_model_path": str(target.relative_to(self.directory)),
                "training_success": True,
                "status": "accepted",
                "manifest_sha256": sha256_bytes(manifest_bytes),
            })
            self.history.append(entry)
            self.data["versioning"]["next_version"] = version + 1
            self.data["current_version"] = version
            doomed = self._prune()
            self._save()  # the commit point
        except BaseException:
            # nothing on disk names the new directory: memory goes back to what the disk says
            self.data = before
            shutil.rmtree(target, ignore_errors=True)
            raise
        for old in doomed:  # only once the registry no longer needs them
            shutil.rmtree(self.version_dir(old), ignore_errors=True)
        return version

    def record_run(self, info: dict[str, Any], status: str) -> dict[str, Any]:
        """Record a run that made no version (rejected or aborted) in the history."""
        entry = self._history_entry(info)
        entry["status"] = status
        self.history.append(entry)
        try:
            self._save()
        except BaseException:
            self.history.pop()
            raise
        return entry

    def _prune(self) -> list[int]:
        """Mark the versions beyond ``keep_versions`` as pruned; returns them (the caller deletes them
        after the registry that no longer names them is durable)."""
        keep = self.data["versioning"]["keep_versions"]
        kept = self.kept_versions()
        protected = {self.current_version}
        for version in kept[-keep:] + [self.current_version]:
            if version is not None:
                base = self.entry(version).get("base_version")
                if base:
                    protected.add(base)
        doomed = []
        for version in kept[:-keep]:
            if version in protected:
                continue
            self.entry(version)["pruned"] = True
            doomed.append(version)
        return doomed

    def _act(self, action: str, **fields: Any) -> None:
        self.data["actions"].append({"action": action, "timestamp": time.time(),
                                     "from_version": self.current_version, **fields})

    def rollback(self, version: int) -> None:
        """Make a kept, verified version current again (later versions stay in the history)."""
        entry = self.entry(version)
        if entry.get("status") != "accepted":
            raise RegistryError(f"version {version} was not accepted")
        self.verify(version)
        self._act("rollback", to_version=version)
        self.data["current_version"] = version
        self._save()

    def reset(self) -> None:
        """Go back to the original base model; versions and history stay."""
        self._act("reset", to_version=None)
        self.data["current_version"] = None
        self._save()
