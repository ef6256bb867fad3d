"""The event contracts of memstream, version 1: MemoryEvent, ModelUpdated, DriftAlert and the dead
letter, their builders, the msgpack codec and the topic names. A leaf: it imports nothing of the
rest of the project, so producers and consumers need nothing else."""
