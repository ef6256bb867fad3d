"""The running system: the faust app and its ingest agent, the worker process, the pool of
trainer processes, topic administration, the embedded broker launcher, settings and metrics."""
