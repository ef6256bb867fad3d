"""A directory an assistant writes one JSON file per memory into (JSONL files and stdin are read by
:func:`contracts.events.read_jsonl`).

A watched directory keeps a ledger (``.memstream-published.json`` in the directory, written
atomically) of the event ids it published and the files it has seen, so a restart publishes
nothing twice and a file whose content was already published under another name is skipped.

Examples
--------
>>> import json, tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "m1.json").write_text(json.dumps({"profile": "bo", "ts": 1, "kind": "note", "text": "plant figs"}))
>>> _ = (d / "copy.json").write_text(json.dumps({"profile": "bo", "ts": 1, "kind": "note", "text": "plant figs"}))
>>> _ = (d / "bad.json").write_text("{oops")
>>> watcher = DirectoryWatcher(d)
>>> scan = watcher.scan()
>>> [e.text for e in scan.new], scan.duplicates, [name for name, _ in scan.errors]
(['plant figs'], ['m1.json'], ['bad.json'])
>>> watcher.mark_published(scan.new, scan)
>>> DirectoryWatcher(d).scan().new   # a restart sees nothing new
[]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.events import InvalidEvent, MemoryEvent
from producers.producer import build_event
from learner.store.storage import atomic_write_json, read_json

__all__ = ["DirectoryWatcher", "Scan", "LEDGER_FILE"]

LEDGER_FILE = ".memstream-published.json"


@dataclass
class Scan:
    """What one look at the directory found.

    >>> Scan().new, Scan(duplicates=["a.json"]).duplicates
    ([], ['a.json'])"""

    new: list[MemoryEvent] = field(default_factory=list)
    new_files: dict[str, str] = field(default_factory=dict)  # file name -> event id
    duplicates: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


class DirectoryWatcher:
    """Find the JSON memory files in ``directory`` not yet published."""

    def __init__(self, directory: str | Path, pattern: str = "*.json"):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise NotADirectoryError(20, "not a directory", str(self.directory))
        self.pattern = pattern
        self.ledger_path = self.directory / LEDGER_FILE
        ledger: dict[str, Any] = read_json(self.ledger_path) if self.ledger_path.exists() else {}
        self.published_ids: set[str] = set(ledger.get("ids", []))
        self.files: dict[str, str] = dict(ledger.get("files", {}))  # name -> "size:mtime_ns" or "error:..."

    @staticmethod
    def _signature(path: Path) -> str:
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    def scan(self) -> Scan:
        """Read the files that are new or changed since they were last seen."""
        scan = Scan()
        ids_this_scan: set[str] = set()
        for path in sorted(self.directory.glob(self.pattern)):
            if path.name == LEDGER_FILE or not path.is_file():
                continue
            signature = self._signature(path)
            if self.files.get(path.name, "").split("|")[0] == signature:
                continue
            try:
                event = build_event(json.loads(path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                scan.errors.append((path.name, f"not a JSON file: {exc}"))
                self.files[path.name] = f"{signature}|error"
                continue
            except (InvalidEvent, TypeError) as exc:
                scan.errors.append((path.name, str(exc)))
                self.files[path.name] = f"{signature}|error"
                continue
            if event.id in self.published_ids or event.id in ids_this_scan:
                scan.duplicates.append(path.name)
                self.files[path.name] = signature
                continue
            ids_this_scan.add(event.id)
            scan.new.append(event)
            scan.new_files[path.name] = signature
        return scan

    def mark_published(self, events: list[MemoryEvent], scan: Scan | None = None) -> None:
        """Record acknowledged events (and their files) in the ledger, atomically."""
        self.published_ids.update(e.id for e in events)
        if scan is not None:
            self.files.update(scan.new_files)
        self.save()

    def save(self) -> None:
        atomic_write_json(self.ledger_path, {"ids": sorted(self.published_ids), "files": self.files})
