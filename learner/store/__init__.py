"""Durable state on disk: atomic writes and checksums, the one-writer-per-profile lock, the model
registry with its history, rollback and reset, and the layout of a version directory."""
