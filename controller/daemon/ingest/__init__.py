"""Exactly-once ingest: partitions, batches, flushing, progress, holds and broker log gaps."""

from controller.daemon.ingest.ingest import Ingest
from controller.daemon.ingest.log_gaps import LogGaps

__all__ = [
    "Ingest",
    "LogGaps",
]
