"""Consolidation wall time after 1k vs 100k ingested events (same batch size): the ratio must stay flat.

    python benchmarks/consolidation_flat.py [--large 100000] [--repeats 3] [--json OUT]

Both learners get the same config; the only difference is how many events went through
``learn_one`` before the timed consolidations. Each figure is the median of ``--repeats``
consolidations of ``--batch-new`` new events plus replay, timed alternately on the two
learners in this one process (so machine noise hits both alike).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from learner.config import load_config
from learner.online import OnlineLearner
from learner.sample_data import DOMAINS, generate_stream

OVERRIDES = ["scheduler.count=1000000000", "scheduler.interval_s=1e15", "drift.enabled=false",
             "train.epochs=1", "train.max_steps=20", "model.d_model=64", "model.n_layers=2", "model.d_ff=128",
             "model.max_seq_len=96", "train.probe_size=32", "ewc.fisher_samples=16"]


class Subject:
    """A learner that has ingested ``ingested`` events, ready to consolidate batches of ``batch_new``."""

    def __init__(self, ingested: int, batch_new: int, repeats: int):
        cfg = load_config(overrides=OVERRIDES, environ={})
        self.learner = OnlineLearner("bench", cfg, tempfile.mkdtemp(prefix="bench-"))
        self.events = generate_stream(n_per_phase=(ingested + batch_new * (repeats + 1),), seed=0,
                                      phases=[tuple(DOMAINS)], profile="bench")
        self.batch_new = batch_new
        started = time.perf_counter()
        for e in self.events[:ingested]:
            self.learner.learn_one(e)
        self.ingest_s = time.perf_counter() - started
        self.cursor = ingested
        self.learner.consolidate("manual")  # the foundation run, not timed
        self.times: list[float] = []

    def timed_consolidation(self) -> None:
        for e in self.events[self.cursor:self.cursor + self.batch_new]:
            self.learner.learn_one(e)
        self.cursor += self.batch_new
        started = time.perf_counter()
        self.learner.consolidate("manual")
        self.times.append(time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--batch-new", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    small_subject = Subject(args.small, args.batch_new, args.repeats)
    large_subject = Subject(args.large, args.batch_new, args.repeats)
    for _ in range(args.repeats):  # alternate, so machine noise hits both alike
        small_subject.timed_consolidation()
        large_subject.timed_consolidation()
    small, large = small_subject.times, large_subject.times
    small_ingest, large_ingest = small_subject.ingest_s, large_subject.ingest_s
    result = {
        "small_events": args.small, "large_events": args.large, "batch_new": args.batch_new,
        "consolidation_s_small": statistics.median(small), "consolidation_s_large": statistics.median(large),
        "ratio_large_over_small": statistics.median(large) / statistics.median(small),
        "runs_small": small, "runs_large": large,
        "ingest_events_per_s_small": args.small / small_ingest, "ingest_events_per_s_large": args.large / large_ingest,
    }
    print(f"consolidation after {args.small:,} events: {result['consolidation_s_small']:.2f}s (median of {args.repeats})")
    print(f"consolidation after {args.large:,} events: {result['consolidation_s_large']:.2f}s (median of {args.repeats})")
    print(f"ratio large/small: {result['ratio_large_over_small']:.3f}")
    print(f"ingest (learn_one, no drift): {result['ingest_events_per_s_large']:,.0f} events/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
