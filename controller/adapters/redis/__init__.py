"""The Redis edge: aggregates with exactly-once flushes, rollout states with their outbox."""
