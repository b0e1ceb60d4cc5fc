"""Exactly-once ingest: partitions, batches, flushing, progress, holds, log gaps, OTLP records."""

from controller.daemon.ingest.counted import CountedThrough, counted_through
from controller.daemon.ingest.ingest import Ingest
from controller.daemon.ingest.log_gaps import LogGaps
from controller.daemon.ingest.otlp import DecodeLogs, DecodeSpans, OtlpFolder, OtlpTally

__all__ = [
    "CountedThrough",
    "DecodeLogs",
    "DecodeSpans",
    "Ingest",
    "LogGaps",
    "OtlpFolder",
    "OtlpTally",
    "counted_through",
]
