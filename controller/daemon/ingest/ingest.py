"""Ingest: events from Kafka into per-cell aggregates in Redis, exactly once.

The order of one batch, and why it is safe to crash anywhere in it:

1. fetch records of owned partitions (the position is the offset stored in
   Redis, sought when the partition was claimed);
2. decode and fold them in memory, one :class:`PartitionDelta` per partition
   (while the previous flush is still running in Redis, or started less than
   ``ingest.flush_interval_ms`` ago, the batches fetched meanwhile are folded on
   into the same deltas, up to :data:`~.held_work.HELD_BATCHES` fetches' worth,
   so the daemon does not wait on Redis and the next flush carries them all);
   each partition's next offset is where the fetch left it, past the
   transaction markers and aborted records after its last record
   (:mod:`.read_past`), so a log that ends with a marker is counted to its end;
3. publish rejected records to the DLQ and wait for the broker's ack, so a
   rejection is durable before its offset can advance (a crash here
   republishes it: the DLQ is at-least-once, deduplicate on source offset);
4. once the previous flush has finished, flush each partition's delta with
   one Redis script that applies every increment and records the next offset
   atomically, fenced by the epoch (at most one flush is in flight, so
   memory stays bounded and offsets chain in order; a larger flush costs Redis
   less per event, since much of a flush's work is per cell, not per event);
5. now and then commit offsets to Kafka, for lag monitoring only.

A crash before step 4 replays the batch; a crash after it finds the stored
offset already advanced, so the replay is a no-op. When Redis is unreachable
the batch is held, fetching pauses, and the flush is retried with back-off;
a stored offset behind ours (Redis lost writes) is replayed.

A partition whose log no longer holds its stored offset (a broker that came
back without its data) is held for an operator's choice, never skipped:
:mod:`.log_gaps`.

Three parts: :mod:`.partitions` owns the partitions (claims, revocations,
fences, replays of lost writes), :mod:`.batches` decodes and folds records
into deltas, and :mod:`.flushing` flushes them, bound once per run to the
source, the store and the dead-letter queue. This module is the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from controller.daemon.ingest.batches import Folder, Folding
from controller.daemon.ingest.counted import CountedThrough
from controller.daemon.ingest.flushing import Alarm, Flusher
from controller.daemon.ingest.held_work import HeldWork
from controller.daemon.ingest.holding import Holding
from controller.daemon.ingest.log_gaps import LogGaps
from controller.daemon.ingest.partitions import Owned, Partitions
from controller.daemon.ingest.progress import IngestStats
from controller.daemon.metrics import Metrics
from controller.kit.backoff import DEFAULT_RETRY
from controller.ports import (
    AggregateWriter,
    DeadLetter,
    DeadLetters,
    EventSource,
    Record,
)
from controller.process import Retry
from controller.settings import IngestSettings, RetrySettings

T = TypeVar("T")
_TURNS_TO_SEND = 3

__all__ = ["Alarm", "Ingest"]


class Ingest:
    """The ingest loop; also the partition listener of its consumer.

    It reads the events topic unless given the ``folder`` of another source
    (the OpenTelemetry topics) and that source's ``role`` (metric labels).
    """

    def __init__(
        self,
        *,
        settings: IngestSettings,
        metrics: Metrics | None = None,
        alarm: Alarm | None = None,
        retry: RetrySettings = DEFAULT_RETRY,
        gaps: LogGaps | None = None,
        folder: Folding | None = None,
        role: str = "events",
        counted: CountedThrough | None = None,
    ) -> None:
        self._settings = settings
        self._gaps, self._counted = gaps, counted or CountedThrough(None)  # for the gates
        self._metrics, self._alarm = metrics or Metrics(), alarm
        self._folder = folder or Folder(max_event_bytes=settings.max_event_bytes)
        self._role = role
        self._parts = Partitions(
            metrics=self._metrics, stall_after=settings.stall_after_seconds, role=role
        )
        self._stopping = asyncio.Event()
        self._retry = Retry(self._stopping, retry)
        self.stats = IngestStats()
        self._source: EventSource | None = None
        self._flusher: Flusher | None = None
        self._holding: Holding | None = None
        self._held = HeldWork(self._folder, settings)

    # -- partition listener (called by the consumer during a rebalance) --------
    def partitions_assigned(self, partitions: list[int]) -> None:
        # Claiming needs Redis, so it happens in the loop; until then, no fetching.
        self._parts.assigned(partitions)
        if self._source is not None and partitions:
            self._source.pause(partitions)

    def partitions_revoked(self, partitions: list[int]) -> None:
        self._parts.revoked(partitions)
        if self._gaps is not None:
            self._gaps.forget(partitions)

    # -- lifecycle -------------------------------------------------------------
    @property
    def owned_partitions(self) -> int:
        """How many events partitions this instance owns (claimed) now."""
        return len(self._parts.owned)

    @property
    def owned_partition_ids(self) -> list[int]:
        """The events partitions this instance owns (claimed) now."""
        return sorted(self._parts.owned)

    @property
    def waiting_partition_ids(self) -> list[int]:
        """Events partitions assigned here but not ingested now (claiming, fenced, replaying)."""
        return self._parts.waiting_ids()

    @property
    def held_records(self) -> int:
        """How many fetched records are folded and wait for the flush in flight to end."""
        return self._held.records

    def held(self) -> str | None:
        """Why events partitions are held for an operator's choice, or None."""
        return None if self._gaps is None else self._gaps.reason()

    def stalled(self, now: float) -> str | None:
        """Why ingest counts as stalled at monotonic time ``now``, or None (see Partitions)."""
        return self._parts.stalled(now, self._source)

    def stop(self) -> None:
        """Finish the batch in hand, flush it, and return from :meth:`run`."""
        self._stopping.set()

    async def run(
        self, *, source: EventSource, store: AggregateWriter, dead_letters: DeadLetters
    ) -> None:
        """Consume until :meth:`stop`; every fetched batch is flushed before returning."""
        self._source = source
        self._flusher = flusher = Flusher(
            source=source,
            store=store,
            dead_letters=dead_letters,
            parts=self._parts,
            folder=self._folder,
            retry=self._retrying,
            stats=self.stats,
            metrics=self._metrics,
            alarm=self._alarm,
        )
        if self._parts.to_claim:
            source.pause(sorted(self._parts.to_claim))
        last_commit = last_progress = time.monotonic()
        holding = self._holding = self._holding_for(source)
        held = holding.at_claim if holding is not None else None
        while not self._stopping.is_set():
            await self._parts.claim_pending(source, store, self._retrying, held)
            claims = dict(self._parts.owned)  # what the fetched records are read under
            waited = time.perf_counter()
            batch = await source.fetch(
                timeout_ms=self._settings.fetch_timeout_ms,
                max_records=self._settings.max_batch_records,
            )
            self.stats.fetch_wait_seconds += time.perf_counter() - waited
            await self._process(batch, claims, flusher)
            now = time.monotonic()
            if holding is not None:
                await holding.poll()
            if now - last_commit >= self._settings.commit_interval_seconds:
                await source.commit(self._parts.positions())
                await self._ask_ends(source, flusher)
                if holding is not None:
                    await holding.watch()
                last_commit = now
            if now - last_progress >= 10:
                self._log_progress()
                last_progress = now
        await self._flush_held(flusher)
        await flusher.settle()
        await source.commit(self._parts.positions())
        self._log_progress()

    def _holding_for(self, source: EventSource) -> Holding | None:
        if self._gaps is None:
            return None
        return Holding(self._gaps, self._parts, source, self._retrying, self._settings.start_from)

    async def _ask_ends(self, source: EventSource, flusher: Flusher) -> None:
        """Ask the broker for the end of partitions not fetched now, so their lag is true."""
        await self._counted.record(self._parts, source)  # and which are counted through
        idle = self._parts.waiting_ids()
        if flusher.outage:
            idle = self._parts.assigned_ids
        if idle:
            self._parts.ends_known(await source.end_offsets(idle))
            self._parts.observe_lag(source)

    def _log_progress(self) -> None:
        self.stats.log(partitions=sorted(self._parts.owned), source=self._role)

    # -- one batch ---------------------------------------------------------------
    async def _process(
        self, batch: dict[int, list[Record]], claims: dict[int, Owned], flusher: Flusher
    ) -> None:
        rejected: list[DeadLetter] = []
        served: set[int] = set()
        for partition, fetched in batch.items():
            owned = claims.get(partition)
            if owned is None or not self._parts.current(partition, owned) or not fetched:
                continue  # revoked meanwhile: the new owner reads it from the stored offset
            records = self._held.read_again(partition, owned, fetched)  # all, or the rest
            if not records or (
                self._holding is not None
                and not self._held.follows(partition, owned, records[0].offset)
                and await self._holding.at_fetch(partition, owned, records[0])
            ):
                continue
            self._held.fold(partition, records, owned, rejected)
            served.add(partition)
        if rejected:
            await flusher.dead_letter(rejected)
        if self._source is not None:  # the run's
            await self._held.read_on(claims, self._source, self._parts, self._holding, served)
        if not (batch and self._held.waits(flusher.busy)):  # else fold on (see .held_work)
            await self._flush_held(flusher)  # a fetch that brought nothing: Redis can have it

    async def _flush_held(self, flusher: Flusher) -> None:
        """Flush the held work once the flush before it has ended (one flush in flight)."""
        await flusher.settle()
        work = self._held.take(self._parts)
        if not work:
            return
        flusher.start(work)
        # Let the flush write its requests now: a fetch served from aiokafka's
        # buffer does not yield, so without this Redis would only see them at
        # settle. Each turn runs every ready task one step: the flush task to
        # its gather, then each partition's request onto its socket.
        for _ in range(_TURNS_TO_SEND):
            await asyncio.sleep(0)

    async def _retrying(
        self,
        call: Callable[[], Awaitable[T]],
        what: str,
        *,
        on_outage: Callable[[], None] | None = None,
    ) -> T | None:
        """Run ``call``; while it fails retriably, back off (``on_outage`` at the first failure).

        Returns None only when asked to stop before the call succeeded; the
        work in hand is then not flushed and will be replayed by the next owner.
        """
        return await self._retry(call, what, on_outage=on_outage)
