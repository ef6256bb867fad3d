"""Starting a worker: its topics, its metrics endpoint, and faust's worker around :mod:`streams.app`."""

from __future__ import annotations

import faulthandler
import signal
from pathlib import Path
from typing import Callable

import faust

from contracts.topics import Topics
from streams.app import Worker

__all__ = ["run_worker"]


def run_worker(config, state_root: str | Path, log: Callable[[str], None] | None = None,
               loglevel: str = "warn") -> int:
    """Create the topics when missing, then run a worker until SIGTERM/SIGINT; returns the exit code."""
    from streams.topics import ensure_topics, topic_id

    state_root = Path(state_root)
    state_root.mkdir(parents=True, exist_ok=True)
    created = ensure_topics(config.kafka)
    source = Topics(config.kafka.topic_prefix).memory_events
    tid = topic_id(config.kafka, source)
    worker = Worker(config, state_root, log=log, topic_ids={source: tid} if tid else None)
    if config.worker.warm_trainers:
        worker.core.runs.warm(worker.core.learner_config.to_dict())  # torch and the base load while the group forms
    if created:
        worker.log(f"created topics: {', '.join(created)}")
    if config.worker.metrics_port:
        worker.metrics.serve(config.worker.metrics_port)
        worker.log(f"metrics on http://0.0.0.0:{config.worker.metrics_port}/metrics")
    faulthandler.register(signal.SIGQUIT, all_threads=True)  # every thread's stack, even with the loop blocked
    faust_worker = faust.Worker(worker.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    faust_worker.spinner = None  # its terminal spinner writes cursor codes into the log, terminal or not
    try:
        faust_worker.execute_from_commandline()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    if worker.joined and config.worker.instance_id and config.worker.leave_group_on_stop:  # its consumer is closed
        from streams.membership import leave_group

        worker.log(leave_group(config.kafka, config.worker.group, config.worker.instance_id,
                               config.worker.stop_commit_timeout_s))
    return code
