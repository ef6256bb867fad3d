"""The drift benchmark's streams: abrupt, similar, gradual and recurring switches between domains of
the public stream, and stationary streams, each with where it switches."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from contracts.events import MemoryEvent
from memstream.samples.public_stream import SIMILAR

__all__ = ["StreamCase", "build_cases"]


@dataclass
class StreamCase:
    """One stream: its texts and where (if anywhere) the distribution switches.

    >>> StreamCase("a->b", "switch", ["a"] * 3 + ["b"] * 3, switches=[3]).switches
    [3]"""

    name: str
    kind: str  # "switch", "gradual", "recurring" or "stationary"
    texts: list[str]
    switches: list[int] = field(default_factory=list)
    similar: bool = False


def _domains(events: list[MemoryEvent]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for event in events:
        if event.domain is not None:
            groups.setdefault(str(event.domain), []).append(event.training_text)
    if len(groups) < 2:
        raise ValueError(f"the drift benchmark needs at least 2 domains in meta.domain, found {len(groups)}")
    return groups


def _is_similar(a: str, b: str) -> bool:
    return (a, b) in SIMILAR or (b, a) in SIMILAR


def build_cases(events: list[MemoryEvent], seeds: list[int], n_before: int = 700, n_after: int = 500,
                stationary_len: int = 20_000, ramp: int = 1000, recur_len: int = 1000) -> list[StreamCase]:
    """Every stream of the benchmark (see the module docstring), reproducible from ``seeds``.

    >>> evs = [MemoryEvent.from_dict({"v": 1, "profile": "p", "ts": 0, "kind": "note", "text": f"{d} {i}",
    ...                               "meta": {"domain": d}}) for d in ("legal", "copyright", "code") for i in range(5)]
    >>> cases = build_cases(evs, [0], n_before=4, n_after=3, stationary_len=6, ramp=4, recur_len=3)
    >>> sorted({c.kind for c in cases}), sum(c.kind == "switch" for c in cases), [c.similar for c in cases][:2]
    (['gradual', 'recurring', 'stationary', 'switch'], 6, [True, False])
    >>> next(c for c in cases if c.kind == "recurring").switches
    [4, 7]
    """
    groups = _domains(events)
    names = list(groups)
    neighbours = [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]
    gradual_pairs = list(dict.fromkeys([p for p in SIMILAR if p[0] in groups and p[1] in groups] + neighbours))
    cases = []
    for seed in seeds:
        rng = random.Random(seed)

        def draw(domain: str, n: int) -> list[str]:
            return [rng.choice(groups[domain]) for _ in range(n)]

        for a in names:
            for b in names:
                if a != b:
                    cases.append(StreamCase(f"{a}->{b} seed {seed}", "switch", draw(a, n_before) + draw(b, n_after),
                                            [n_before], _is_similar(a, b)))
        for a, b in gradual_pairs:
            mixed = [rng.choice(groups[b] if rng.random() < (i + 1) / ramp else groups[a]) for i in range(ramp)]
            cases.append(StreamCase(f"{a}~>{b} seed {seed}", "gradual", draw(a, n_before) + mixed, [n_before],
                                    _is_similar(a, b)))
        for a, b in neighbours:
            texts = draw(a, n_before) + draw(b, recur_len) + draw(a, n_after)
            cases.append(StreamCase(f"{a}->{b}->{a} seed {seed}", "recurring", texts,
                                    [n_before, n_before + recur_len], _is_similar(a, b)))
    rng = random.Random(seeds[0] if seeds else 0)
    pools = dict(groups)
    pools["mixed"] = [t for texts in groups.values() for t in texts]
    for name, pool in pools.items():
        cases.append(StreamCase(f"{name} stationary", "stationary", [rng.choice(pool) for _ in range(stationary_len)]))
    return cases
