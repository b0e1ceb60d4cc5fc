"""Exactly-once ingest: partitions, batches, flushing, progress, holds, log gaps, OTLP records.

And its catch-up: how far its counts trail the broker's log ends when a stage is about to move.
"""

from controller.daemon.ingest.catch_up import BehindAlarm, CatchUp, LogEnds
from controller.daemon.ingest.counted import CountedThrough, counted_through
from controller.daemon.ingest.ingest import Ingest
from controller.daemon.ingest.log_gaps import LogGaps
from controller.daemon.ingest.otlp import DecodeLogs, DecodeSpans, OtlpFolder, OtlpTally

__all__ = [
    "BehindAlarm",
    "CatchUp",
    "CountedThrough",
    "DecodeLogs",
    "DecodeSpans",
    "Ingest",
    "LogEnds",
    "LogGaps",
    "OtlpFolder",
    "OtlpTally",
    "counted_through",
]
