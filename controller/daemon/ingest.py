"""Ingest: events from Kafka into per-cell aggregates in Redis, exactly once.

The order of one batch, and why it is safe to crash anywhere in it:

1. fetch records of owned partitions (the position is the offset stored in
   Redis, sought when the partition was claimed);
2. decode and fold them in memory, one :class:`PartitionDelta` per partition
   (while the previous batch's flush is still running in Redis);
3. publish rejected records to the DLQ and wait for the broker's ack, so a
   rejection is durable before its offset can advance (a crash here
   republishes it: the DLQ is at-least-once, deduplicate on source offset);
4. once the previous flush has finished, flush each partition's delta with
   one Redis script that applies every increment and records the next offset
   atomically, fenced by the epoch (at most one flush is in flight, so
   memory stays bounded and offsets chain in order);
5. now and then commit offsets to Kafka, for lag monitoring only.

A crash before step 4 replays the batch; a crash after it finds the stored
offset already advanced, so the replay is a no-op. When Redis is unreachable
the batch is held, fetching pauses, and the flush is retried with back-off;
a stored offset behind ours (Redis lost writes) is replayed (:mod:`.partitions`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from controller.backoff import DEFAULT_RETRY
from controller.core.decoding import (
    MAX_DETAIL_CHARS,
    EventDecoder,
    InEvent,
    Rejection,
    RejectReason,
)
from controller.core.errors import FencedError, FlushRefused, LostWrites
from controller.core.folding import PartitionDelta, fold
from controller.core.rollout import RaiseAlert
from controller.daemon.metrics import Metrics
from controller.daemon.partitions import Owned, Partitions
from controller.daemon.progress import IngestStats
from controller.ports import (
    AggregateWriter,
    DeadLetter,
    DeadLetters,
    EventSource,
    FlushOutcome,
    Record,
)
from controller.retrying import Retry
from controller.settings import IngestSettings, RetrySettings

log = structlog.get_logger("controller.daemon.ingest")
T = TypeVar("T")
_TURNS_TO_SEND = 3
Alarm = Callable[[RaiseAlert], None]
"""Raises an alert that concerns no flag (published on the alerts topic)."""


@dataclass(slots=True)
class _Work:
    """One partition's share of a batch, with the claim it was read under."""

    delta: PartitionDelta
    records: list[Record]
    owned: Owned


class Ingest:
    """The ingest loop; also the partition listener of its consumer."""

    def __init__(
        self,
        *,
        settings: IngestSettings,
        metrics: Metrics | None = None,
        alarm: Alarm | None = None,
        retry: RetrySettings = DEFAULT_RETRY,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._alarm = alarm
        self._decoder = EventDecoder(max_bytes=settings.max_event_bytes)
        self._parts = Partitions(metrics=self._metrics, stall_after=settings.stall_after_seconds)
        self._stopping = asyncio.Event()
        self._retry = Retry(self._stopping, retry)
        self.stats = IngestStats()
        self._source: EventSource | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._outage = False

    # -- partition listener (called by the consumer during a rebalance) --------
    def partitions_assigned(self, partitions: list[int]) -> None:
        # Claiming needs Redis, so it happens in the loop; until then, no fetching.
        self._parts.assigned(partitions)
        if self._source is not None and partitions:
            self._source.pause(partitions)

    def partitions_revoked(self, partitions: list[int]) -> None:
        self._parts.revoked(partitions)

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
        if self._parts.to_claim:
            source.pause(sorted(self._parts.to_claim))
        last_commit = last_progress = time.monotonic()
        while not self._stopping.is_set():
            await self._parts.claim_pending(source, store, self._retrying)
            claims = dict(self._parts.owned)  # what the fetched records are read under
            waited = time.perf_counter()
            batch = await source.fetch(
                timeout_ms=self._settings.fetch_timeout_ms,
                max_records=self._settings.max_batch_records,
            )
            self.stats.fetch_wait_seconds += time.perf_counter() - waited
            if batch:
                await self._process(
                    batch, claims, source=source, store=store, dead_letters=dead_letters
                )
            now = time.monotonic()
            if now - last_commit >= self._settings.commit_interval_seconds:
                await source.commit(self._parts.positions())
                await self._ask_ends(source)
                last_commit = now
            if now - last_progress >= 10:
                self._log_progress()
                last_progress = now
        await self._settle()
        await source.commit(self._parts.positions())
        self._log_progress()

    async def _ask_ends(self, source: EventSource) -> None:
        """Ask the broker for the end of partitions not fetched now, so their lag is true."""
        idle = self._parts.waiting_ids()
        if self._outage:
            idle = self._parts.assigned_ids
        if idle:
            self._parts.ends_known(await source.end_offsets(idle))
            self._parts.observe_lag(source)

    async def _settle(self) -> None:
        """Wait for the flush in flight, if any; its errors surface here."""
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            waited = time.perf_counter()
            await task
            self.stats.flush_wait_seconds += time.perf_counter() - waited

    def _log_progress(self) -> None:
        self.stats.log(partitions=sorted(self._parts.owned))

    # -- one batch ---------------------------------------------------------------
    async def _process(
        self,
        batch: dict[int, list[Record]],
        claims: dict[int, Owned],
        *,
        source: EventSource,
        store: AggregateWriter,
        dead_letters: DeadLetters,
    ) -> None:
        work: list[_Work] = []
        letters: list[DeadLetter] = []
        for partition, records in batch.items():
            owned = claims.get(partition)
            if owned is None or not self._parts.current(partition, owned) or not records:
                continue  # revoked meanwhile: the new owner reads it from the stored offset
            work.append(_Work(self._fold(partition, records, letters), records, owned))
        if letters:
            await self._retrying(lambda: dead_letters.publish(letters), "dead-letter publish")
        # One flush in flight: Redis applies this batch while the next one is
        # fetched and folded. Flushes stay in order, so offsets chain per partition.
        await self._settle()
        # A partition claimed again meanwhile (Redis lost writes) is read again
        # from its stored offset: what was fetched before that is not flushed.
        work = [w for w in work if self._parts.current(w.delta.partition, w.owned)]
        self._in_flight = asyncio.create_task(
            self._flush_all(work, store=store, source=source, dead_letters=dead_letters),
            name="ingest-flush",
        )
        # Let the flush write its requests now: a fetch served from aiokafka's
        # buffer does not yield, so without this Redis would only see them at
        # _settle. Each turn runs every ready task one step: the flush task to
        # its gather, then each partition's request onto its socket.
        for _ in range(_TURNS_TO_SEND):
            await asyncio.sleep(0)

    async def _flush_all(
        self,
        work: list[_Work],
        *,
        store: AggregateWriter,
        source: EventSource,
        dead_letters: DeadLetters,
    ) -> None:
        held = [w.delta.partition for w in work]
        started = time.perf_counter()
        try:
            # Partitions are independent (own keys, own offsets): flush them together.
            await asyncio.gather(
                *(
                    self._flush(w, store=store, source=source, held=held, letters=dead_letters)
                    for w in work
                )
            )
        finally:
            # An outage in one partition's flush paused them all; however each
            # flush ended (applied, fenced, lost), the ones still owned go on.
            if self._outage:
                self._outage = False
                source.resume(self._parts.resumable(held))
        self.stats.last_flush_seconds = time.perf_counter() - started
        self.stats.last_flush_at = time.monotonic()
        self.stats.batches += 1
        self._metrics.flush_seconds.observe(self.stats.last_flush_seconds)
        self._parts.observe_lag(source)

    def _fold(
        self, partition: int, records: list[Record], letters: list[DeadLetter]
    ) -> PartitionDelta:
        decode = self._decoder.decode
        delta = PartitionDelta(partition=partition, next_offset=records[-1].offset + 1)
        events: list[InEvent] = []
        for record in records:
            decoded = decode(record.value)
            if isinstance(decoded, Rejection):
                letters.append(DeadLetter(record, decoded.reason.value, decoded.detail))
                delta.rejects[decoded.reason.value] += 1
                log.warning(
                    "event_rejected",
                    reason=decoded.reason.value,
                    detail=decoded.detail,
                    partition=partition,
                    offset=record.offset,
                )
            else:
                events.append(decoded)
        fold(events, delta.cells)
        return delta

    async def _flush(
        self,
        work: _Work,
        *,
        store: AggregateWriter,
        source: EventSource,
        held: list[int],
        letters: DeadLetters,
    ) -> None:
        delta, owned = work.delta, work.owned
        try:
            outcome = await self._retrying(
                lambda: store.flush(delta, epoch=owned.epoch, expected_offset=owned.offset),
                f"flush p{delta.partition}",
                pause=(source, held),
            )
        except FencedError as exc:
            self.stats.fenced += 1
            self._parts.fenced(delta.partition, owned, exc)
            return
        except LostWrites as exc:
            self._lost(delta.partition, owned, exc, source)
            return
        except FlushRefused as exc:
            log.warning("flush_refused", partition=delta.partition, error=str(exc))
            await self._flush_each(work, store=store, source=source, letters=letters)
            return
        if outcome is not None:
            self._applied(delta, owned, outcome)

    def _lost(self, partition: int, owned: Owned, exc: LostWrites, source: EventSource) -> None:
        """Redis lost acknowledged writes of ``partition``: replay them, and tell people."""
        alert = self._parts.lost(partition, owned, exc, source)
        if alert is not None:
            self.stats.lost_writes += 1
            if self._alarm is not None:
                self._alarm(alert)

    def _applied(self, delta: PartitionDelta, owned: Owned, outcome: FlushOutcome) -> None:
        self._parts.advanced(delta.partition, owned, delta.next_offset)
        if outcome is FlushOutcome.REPLAYED:
            self.stats.replays += 1
            return
        self.stats.events += delta.events
        self.stats.rejects.update(delta.rejects)
        self._metrics.events.inc(delta.events)
        for reason, count in delta.rejects.items():
            self._metrics.rejects.labels(reason).inc(count)

    async def _flush_each(
        self, work: _Work, *, store: AggregateWriter, source: EventSource, letters: DeadLetters
    ) -> None:
        """Flush a refused batch one record at a time, dead-lettering what Redis would refuse.

        Slow, but only ever taken when a flush was refused: it confines the
        refusal to the records behind it, so the rest of the batch is counted.
        """
        owned = work.owned
        for record in work.records:
            delta = self._fold(record.partition, [record], [])
            try:
                outcome = await self._retrying(
                    lambda d=delta: store.flush(d, epoch=owned.epoch, expected_offset=owned.offset),  # type: ignore[misc]
                    f"flush p{record.partition}",
                )
            except FlushRefused as exc:
                outcome = await self._refuse(record, owned, exc, store=store, letters=letters)
            except FencedError as exc:
                self.stats.fenced += 1
                self._parts.fenced(record.partition, owned, exc)
                return
            except LostWrites as exc:
                self._lost(record.partition, owned, exc, source)
                return
            if outcome is None:
                return
            self._applied(delta, owned, outcome)

    async def _refuse(
        self,
        record: Record,
        owned: Owned,
        exc: FlushRefused,
        *,
        store: AggregateWriter,
        letters: DeadLetters,
    ) -> FlushOutcome | None:
        """Dead-letter one record the store refused and move the offset past it."""
        reason = RejectReason.STORE_REFUSED.value
        log.warning(
            "event_rejected", reason=reason, partition=record.partition, offset=record.offset
        )
        letter = DeadLetter(record, reason, str(exc)[:MAX_DETAIL_CHARS])
        await self._retrying(lambda: letters.publish([letter]), "dead-letter publish")
        skip = PartitionDelta(partition=record.partition, next_offset=record.offset + 1)
        skip.rejects[reason] += 1
        return await self._retrying(
            lambda: store.flush(skip, epoch=owned.epoch, expected_offset=owned.offset),
            f"flush p{record.partition}",
        )

    async def _retrying(
        self,
        call: Callable[[], Awaitable[T]],
        what: str,
        *,
        pause: tuple[EventSource, list[int]] | None = None,
    ) -> T | None:
        """Run ``call``; while it fails retriably, back off with ``pause``'s partitions paused.

        Returns None only when asked to stop before the call succeeded; the
        work in hand is then not flushed and will be replayed by the next owner.
        """
        if pause is None:
            return await self._retry(call, what)
        source, held = pause
        return await self._retry(call, what, on_outage=lambda: self._pause(source, held))

    def _pause(self, source: EventSource, held: list[int]) -> None:
        # Resumed when the whole flush has ended, however each partition's ended.
        self._outage = True
        source.pause(held)
