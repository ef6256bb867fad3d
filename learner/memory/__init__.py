"""What a learner remembers between consolidations: the reservoir replay buffers, the recent
buffer, the dedupe window of event ids, the learner's saved state and the outbox of events it
owes the stream."""
