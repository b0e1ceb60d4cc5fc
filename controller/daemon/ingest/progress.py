"""Ingest's running totals, for its progress log, readiness and the benchmarks."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("controller.daemon.ingest.ingest")


@dataclass(slots=True)
class IngestStats:
    """Running totals of one ingest loop."""

    events: int = 0
    batches: int = 0
    replays: int = 0
    fenced: int = 0
    lost_writes: int = 0
    """Flushes that found Redis had lost writes it acknowledged (each replayed)."""
    duplicates: int = 0
    """Copies of events counted before (the same id), skipped."""
    rejects: Counter[str] = field(default_factory=Counter)
    last_flush_seconds: float = 0.0
    last_flush_at: float = field(default_factory=time.monotonic)
    """When the last flush finished (monotonic clock); start-up counts as one."""
    fetch_wait_seconds: float = 0.0
    """Time the loop spent waiting for records from the broker."""
    flush_wait_seconds: float = 0.0
    """Time the loop spent waiting for the previous flush to finish."""

    def log(self, *, partitions: list[int], source: str = "events") -> None:
        """One ``ingest_progress`` line with the totals so far (``source``: which topic's)."""
        log.info(
            "ingest_progress",
            source=source,
            events=self.events,
            batches=self.batches,
            rejects=dict(self.rejects),
            duplicates=self.duplicates,
            replays=self.replays,
            fenced=self.fenced,
            lost_writes=self.lost_writes,
            partitions=partitions,
            last_flush_ms=round(self.last_flush_seconds * 1000, 2),
            fetch_wait_s=round(self.fetch_wait_seconds, 3),
            flush_wait_s=round(self.flush_wait_seconds, 3),
        )
