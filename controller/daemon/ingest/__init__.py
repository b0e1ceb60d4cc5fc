"""Exactly-once ingest: partitions, batches, flushing, progress, holds and broker log gaps."""
