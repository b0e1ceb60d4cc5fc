"""Exactly-once ingest: partitions, batches, flushing, progress, holds, broker log gaps, and
the OpenTelemetry topics' records."""

from controller.daemon.ingest.ingest import Ingest
from controller.daemon.ingest.log_gaps import LogGaps
from controller.daemon.ingest.otlp import OtlpFolder, OtlpTally

__all__ = [
    "Ingest",
    "LogGaps",
    "OtlpFolder",
    "OtlpTally",
]
