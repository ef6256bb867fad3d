"""Consolidation wall time after 1k vs 100k ingested events (same batch size): the ratio must stay flat.

    python benchmarks/consolidation_flat.py [--large 100000] [--repeats 3] [--json OUT]

Both learners get the same config; the only difference is how many events went through
``learn_one`` before the timed consolidation. Each timing is the median of ``--repeats`` runs
with the same batch size (``scheduler.count`` new events + replay), measured in this process.
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


def time_consolidations(ingested: int, batch_new: int, repeats: int) -> tuple[list[float], float]:
    cfg = load_config(overrides=OVERRIDES, environ={})
    learner = OnlineLearner("bench", cfg, tempfile.mkdtemp(prefix="bench-"))
    events = generate_stream(n_per_phase=(ingested + batch_new * (repeats + 2),), seed=0, phases=[tuple(DOMAINS)],
                             profile="bench")
    started = time.perf_counter()
    for e in events[:ingested]:
        learner.learn_one(e)
    ingest_s = time.perf_counter() - started
    cursor = ingested
    learner.consolidate("manual")  # the foundation run, not timed
    times = []
    for _ in range(repeats):
        for e in events[cursor:cursor + batch_new]:
            learner.learn_one(e)
        cursor += batch_new
        started = time.perf_counter()
        learner.consolidate("manual")
        times.append(time.perf_counter() - started)
    return times, ingest_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--batch-new", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    small, small_ingest = time_consolidations(args.small, args.batch_new, args.repeats)
    large, large_ingest = time_consolidations(args.large, args.batch_new, args.repeats)
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
