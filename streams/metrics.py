"""Prometheus metrics of a worker (``prometheus-client``), served on ``/metrics``.

Each worker keeps its own registry, so two apps in one process (tests) do not collide.

Examples
--------
>>> m = WorkerMetrics()
>>> m.events_in.inc(3)
>>> m.dead_letters.labels(reason="not msgpack").inc()
>>> b"memstream_events_in_total 3.0" in m.render()
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    """The worker's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("memstream_events_in", "Messages read from memory-events.", registry=r)
        self.events_learned = Counter("memstream_events_learned", "Events taken into a learner state.", registry=r)
        self.dead_letters = Counter("memstream_dead_letters", "Messages sent to dead letters, by reason.",
                                    ["reason"], registry=r)
        self.duplicates = Counter("memstream_duplicates", "Re-published events skipped (same id).", registry=r)
        self.redelivered = Counter("memstream_redelivered", "Messages applied before a crash or rebalance, "
                                   "skipped on redelivery.", registry=r)
        self.state_write_failures = Counter("memstream_state_write_failures",
                                            "Ticks whose learner states could not be written (offsets held back).",
                                            registry=r)
        self.quality = Counter("memstream_quality_gate", "Events failing the quality gate.", registry=r)
        self.reservoir_size = Gauge("memstream_reservoir_size", "Events in the replay reservoir.", ["profile"],
                                    registry=r)
        self.drift_divergence = Gauge("memstream_drift_divergence", "Latest KL divergence of the drift window.",
                                      ["profile"], registry=r)
        self.consolidations = Counter("memstream_consolidations", "Consolidations by outcome.", ["outcome"],
                                      registry=r)
        self.consolidation_seconds = Histogram("memstream_consolidation_seconds", "Wall time of a consolidation.",
                                               buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800), registry=r)
        self.consumer_lag = Gauge("memstream_consumer_lag", "Messages not yet read, per partition.",
                                  ["partition"], registry=r)

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on ``port`` (a daemon thread)."""
        start_http_server(port, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
