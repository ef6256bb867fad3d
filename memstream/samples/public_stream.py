"""The public benchmark stream: real text no one on the project wrote, in eight domains.

Every source installs offline with the operating system or Python itself, so anyone can
rebuild the stream from their own machine (``python -m memstream.samples.public_stream build OUT``).
The built stream is committed (``memstream/samples/data/public_stream.jsonl.gz``) with a sidecar
``.sources.json`` naming the exact package versions it came from, because those differ
between machines and the numbers in ``docs/benchmarks.md`` must stay reproducible.

Domains (the first four are clearly different; each of the last four is close to one of them, the
hard case for drift detection)
    ``code``       Python source of CPython's standard library (``Lib/*.py``, tests excluded).
    ``legal``      Licence texts of Debian's ``base-files`` (``/usr/share/common-licenses``).
    ``changelog``  Debian package changelogs (``/usr/share/doc/*/changelog.Debian.gz``).
    ``manual``     Manual pages, section 1, troff source reduced to plain text.
    ``copyright``  Debian packages' copyright files (``/usr/share/doc/*/copyright``): close to ``legal``.
    ``news``       Upstream changelogs and NEWS files (``/usr/share/doc/*/{changelog,NEWS}*``): close to
                   ``changelog``.
    ``admin``      Manual pages of sections 5 and 8 (file formats, administration): close to ``manual``.
    ``info``       GNU Info manuals (``/usr/share/info``): prose documentation, close to ``manual``.

Each document is cut into chunks of whole lines (at most ``max_chars`` characters); each
chunk is one MemoryEvent with ``meta.domain`` and ``meta.source`` (the file it came from).
Events are drawn round-robin over files so that no single file dominates a domain.

>>> chunks = list(chunk_lines(["alpha beta", "", "gamma", "delta epsilon zeta"], max_chars=20, min_chars=5))
>>> chunks
['alpha beta\\n\\ngamma', 'delta epsilon zeta']
>>> strip_troff('.TH LS 1\\n.SH NAME\\nls \\\\- list \\\\fBdirectory\\\\fR contents\\n.B -a')
'NAME\\nls - list directory contents\\n-a'
"""

from __future__ import annotations

import gzip
import hashlib
import json
import platform
import random
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Callable, Iterable, Iterator

from contracts.events import MemoryEvent

__all__ = ["CORE_DOMAINS", "DOMAINS", "SIMILAR", "build_stream", "chunk_lines", "strip_troff", "public_stream_path", "load_public_stream"]

DOMAINS = ("code", "legal", "changelog", "manual", "copyright", "news", "admin", "info")
#: The four clearly different domains (the forgetting and consolidation benchmarks use these).
CORE_DOMAINS = DOMAINS[:4]
#: The pairs of close domains.
SIMILAR = (("legal", "copyright"), ("changelog", "news"), ("manual", "admin"), ("manual", "info"), ("admin", "info"))
PROFILE = "public"
_DATA = Path(__file__).parent / "data" / "public_stream.jsonl.gz"


def public_stream_path() -> Path:
    """Where the committed stream lies."""
    return _DATA


def load_public_stream(path: Path | None = None) -> list[MemoryEvent]:
    """The committed public stream (or one rebuilt to ``path``), as events in stream order."""
    path = path or _DATA
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [MemoryEvent.from_dict(json.loads(line)) for line in handle if line.strip()]


def chunk_lines(lines: Iterable[str], max_chars: int = 180, min_chars: int = 60) -> Iterator[str]:
    """Group consecutive lines into chunks of at most ``max_chars``; drop chunks under ``min_chars``.

    A line longer than ``max_chars`` is cut. Blank lines inside a chunk are kept (layout
    is part of a domain's style); leading and trailing blank lines are not.
    """
    current: list[str] = []
    size = 0
    for line in lines:
        line = line.rstrip()[:max_chars]
        if current and size + len(line) + 1 > max_chars:
            text = "\n".join(current).strip("\n")
            if len(text) >= min_chars:
                yield text
            current, size = [], 0
        if not current and not line:
            continue
        current.append(line)
        size += len(line) + 1
    text = "\n".join(current).strip("\n")
    if len(text) >= min_chars:
        yield text


_TROFF_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_TROFF_ESCAPES = [("\\-", "-"), ("\\(em", "--"), ("\\(en", "-"), ("\\(aq", "'"), ("\\(dq", '"'),
                  ("\\(lq", '"'), ("\\(rq", '"'), ("\\&", ""), ("\\e", "\\"), ("\\ ", " "), ("\\|", ""),
                  ("\\^", ""), ("\\%", "")]
_TROFF_OTHER = re.compile(r"\\[\(\*]..|\\[\*n]\[[^\]]*\]|\\s[-+]?\d|\\.")
_MACRO_WITH_TEXT = {"SH", "SS", "B", "I", "BI", "BR", "IR", "RB", "RI", "IB", "TP", "IP", "Nm", "Nd", "Sh", "Op",
                    "Fl", "Ar", "Pa", "Dv", "Em", "It", "Xr"}


def strip_troff(source: str) -> str:
    """Plain text from man-page troff: macros that carry text keep it, the rest are dropped."""
    out = []
    for line in source.splitlines():
        if line.startswith((".\\\"", "'\\\"", '.\\"')):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].split(None, 1)
            if not parts or parts[0] not in _MACRO_WITH_TEXT or len(parts) == 1:
                continue
            line = parts[1].replace('"', "")
        line = _TROFF_FONT.sub("", line)
        for escape, plain in _TROFF_ESCAPES:
            line = line.replace(escape, plain)
        line = _TROFF_OTHER.sub("", line)
        out.append(line)
    return "\n".join(out).strip()


def _read_text(path: Path) -> str | None:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None
    return text if text.isprintable() or "\n" in text else None


def _stdlib_files() -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in lib.glob("*.py") if not p.name.startswith(("test", "_")))


def strip_info(text: str) -> str:
    r"""Plain text of a GNU Info file: node separators and headers dropped.

    >>> strip_info("x\x1f\nFile: a.info,  Node: Top\nHello there")
    'x\nHello there'
    """
    return "\n".join(line for line in text.replace("\x1f", "").splitlines()
                     if not line.startswith(("File: ", "Tag Table:", "End Tag Table", "\x7f")))


def _doc_files(*patterns: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in Path("/usr/share/doc").glob(pattern) if p.is_file())
    return sorted(found)


def _sources() -> dict[str, tuple[list[Path], Callable[[str], str]]]:
    return {
        "code": (_stdlib_files(), lambda text: text),
        "legal": (sorted(p for p in Path("/usr/share/common-licenses").iterdir() if p.is_file()), lambda text: text),
        "changelog": (sorted(Path("/usr/share/doc").glob("*/changelog.Debian.gz")), lambda text: text),
        "manual": (sorted(p for p in Path("/usr/share/man/man1").glob("*.1.gz")
                          if not p.name.startswith("gcloud")), strip_troff),  # 16k generated pages would dominate
        "copyright": (_doc_files("*/copyright"), lambda text: text),
        "news": (_doc_files("*/changelog.gz", "*/NEWS", "*/NEWS.gz", "*/NEWS.md.gz"), lambda text: text),
        "admin": (sorted([*Path("/usr/share/man/man5").glob("*.5.gz"), *Path("/usr/share/man/man8").glob("*.8.gz")]),
                  strip_troff),
        "info": (sorted(p for p in Path("/usr/share/info").glob("*.info*.gz")), strip_info),
    }


def _source_name(path: Path) -> str:
    if path.name == "changelog.Debian.gz":
        return path.parent.name
    return f"{path.parent.name}/{path.name}" if path.parent.parent == Path("/usr/share/doc") else path.name


def _domain_chunks(files: list[Path], convert: Callable[[str], str], per_file: int,
                   rng: random.Random) -> list[tuple[str, str]]:
    """(chunk, source file) pairs: up to ``per_file`` chunks from each file, files in random order."""
    chosen: list[tuple[str, str]] = []
    order = list(files)
    rng.shuffle(order)
    for path in order:
        text = _read_text(path)
        if text is None:
            continue
        chunks = list(chunk_lines(convert(text).splitlines()))
        if len(chunks) > per_file:
            start = rng.randrange(len(chunks) - per_file + 1)
            chunks = chunks[start:start + per_file]
        chosen.extend((chunk, _source_name(path)) for chunk in chunks)
    return chosen


def _package_versions() -> dict[str, str]:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Version}\n", "base-files", "man-db"],
                             capture_output=True, text=True, check=False).stdout
    except OSError:
        return {}
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def build_stream(out: Path, per_domain: int = 1000, per_file: int = 12, seed: int = 0,
                 start_ts: float = 1_767_225_600.0) -> dict:
    """Write the stream (domain blocks in :data:`DOMAINS` order) to ``out``; return its description.

    Each domain gets ``per_domain`` events when its sources have that many chunks (fewer
    otherwise; the description says how many). The description is also written beside
    ``out`` as ``<out>.sources.json``.
    """
    rng = random.Random(seed)
    sources = _sources()
    counts, n_files = {}, {}
    ts = start_ts
    lines = []
    used: set[str] = set()  # the same text in two files (a licence and its symlinked alias) is kept once
    for domain in DOMAINS:
        files, convert = sources[domain]
        # few, long texts (licences, info manuals): let each give more chunks so the domain is as large as the others
        cap = per_file * 10 if domain in ("legal", "info") else per_file
        chunks = []
        for text, source in _domain_chunks(files, convert, cap, rng):
            if text not in used:
                used.add(text)
                chunks.append((text, source))
        rng.shuffle(chunks)
        chunks = chunks[:per_domain]
        counts[domain] = len(chunks)
        n_files[domain] = len({source for _, source in chunks})
        for text, source in chunks:
            ts += 60.0
            event = MemoryEvent.from_dict({"v": 1, "profile": PROFILE, "ts": ts, "kind": "document",
                                           "text": text, "meta": {"domain": domain, "source": source}})
            lines.append(json.dumps(event.to_dict(), sort_keys=True, ensure_ascii=False))
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as handle:
        if out.suffix == ".gz":
            with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as gz:  # mtime 0: same input, same bytes
                gz.write(payload)
        else:
            handle.write(payload)
    description = {
        "events": counts, "files": n_files, "seed": seed, "per_file": per_file,
        "sha256_of_jsonl": hashlib.sha256(payload).hexdigest(),
        "python": platform.python_version(), "os_packages": _package_versions(),
        "sources": {"code": "CPython standard library Lib/*.py (no tests, no _private modules)",
                    "legal": "/usr/share/common-licenses (Debian base-files), up to 10x per_file chunks per text",
                    "changelog": "/usr/share/doc/*/changelog.Debian.gz",
                    "manual": "/usr/share/man/man1/*.1.gz except gcloud*, troff stripped",
                    "copyright": "/usr/share/doc/*/copyright",
                    "news": "/usr/share/doc/*/{changelog.gz,NEWS,NEWS.gz,NEWS.md.gz}",
                    "admin": "/usr/share/man/man5/*.5.gz and man8/*.8.gz, troff stripped",
                    "info": "/usr/share/info/*.info*.gz, node headers stripped, up to 10x per_file chunks per manual"},
        "rebuild": f"python -m memstream.samples.public_stream build {out.name} --per-domain {per_domain} --seed {seed}",
    }
    Path(str(out) + ".sources.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m memstream.samples.public_stream",
                                     description="Build the public benchmark stream from text on this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build")
    build.add_argument("out", type=Path)
    build.add_argument("--per-domain", type=int, default=1000)
    build.add_argument("--per-file", type=int, default=12)
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    description = build_stream(args.out, args.per_domain, args.per_file, args.seed)
    print(json.dumps(description["events"]), "->", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
