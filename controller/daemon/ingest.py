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
the batch is held, fetching pauses, and the flush is retried with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from controller.backoff import Backoff
from controller.core.decoding import (
    MAX_DETAIL_CHARS,
    EventDecoder,
    InEvent,
    Rejection,
    RejectReason,
)
from controller.core.errors import FencedError, FlushRefused
from controller.core.folding import PartitionDelta, fold
from controller.daemon.metrics import Metrics
from controller.daemon.progress import IngestStats
from controller.ports import (
    AggregateWriter,
    DeadLetter,
    DeadLetters,
    EventSource,
    FlushOutcome,
    Record,
)
from controller.retrying import retrying
from controller.settings import IngestSettings

log = structlog.get_logger("controller.daemon.ingest")
T = TypeVar("T")
_TURNS_TO_SEND = 3


@dataclass(slots=True)
class _Owned:
    epoch: int
    offset: int | None


class Ingest:
    """The ingest loop; also the partition listener of its consumer."""

    def __init__(self, *, settings: IngestSettings, metrics: Metrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._decoder = EventDecoder(max_bytes=settings.max_event_bytes)
        self._owned: dict[int, _Owned] = {}
        self._to_claim: set[int] = set()
        self._stopping = asyncio.Event()
        self.stats = IngestStats()
        self._source: EventSource | None = None
        self._in_flight: asyncio.Task[None] | None = None

    # -- partition listener (called by the consumer during a rebalance) --------
    def partitions_assigned(self, partitions: list[int]) -> None:
        # Claiming needs Redis, so it happens in the loop; until then, no fetching.
        self._to_claim.update(partitions)
        if self._source is not None and partitions:
            self._source.pause(partitions)

    def partitions_revoked(self, partitions: list[int]) -> None:
        for p in partitions:
            self._owned.pop(p, None)
            self._to_claim.discard(p)
            # The new owner reports its lag; a stale value here would read as stalled.
            with contextlib.suppress(KeyError):
                self._metrics.lag.remove(str(p))
        self._metrics.owned("events", self._owned)
        log.info("partitions_revoked", partitions=partitions, owned=self.owned_partition_ids)

    # -- lifecycle -------------------------------------------------------------
    @property
    def owned_partitions(self) -> int:
        """How many events partitions this instance owns (claimed) now."""
        return len(self._owned)

    @property
    def owned_partition_ids(self) -> list[int]:
        """The events partitions this instance owns (claimed) now."""
        return sorted(self._owned)

    def stalled(self, now: float) -> str | None:
        """Why ingest counts as stalled at monotonic time ``now``, or None.

        Stalled: no batch flushed for ``stall_after_seconds`` while an owned
        partition has records left to read (an idle stream is not stalled).
        """
        idle = now - self.stats.last_flush_at
        if idle < self._settings.stall_after_seconds or self._source is None:
            return None
        behind = {
            p: end - o.offset
            for p, o in self._owned.items()
            if o.offset is not None
            and (end := self._source.highwater(p)) is not None
            and end > o.offset
        }
        if not behind:
            return None
        return f"ingest stalled: nothing flushed for {idle:.0f} s, records behind {behind}"

    def stop(self) -> None:
        """Finish the batch in hand, flush it, and return from :meth:`run`."""
        self._stopping.set()

    async def run(
        self, *, source: EventSource, store: AggregateWriter, dead_letters: DeadLetters
    ) -> None:
        """Consume until :meth:`stop`; every fetched batch is flushed before returning."""
        self._source = source
        if self._to_claim:
            source.pause(sorted(self._to_claim))
        last_commit = last_progress = time.monotonic()
        while not self._stopping.is_set():
            await self._claim_pending(source, store)
            waited = time.perf_counter()
            batch = await source.fetch(
                timeout_ms=self._settings.fetch_timeout_ms,
                max_records=self._settings.max_batch_records,
            )
            self.stats.fetch_wait_seconds += time.perf_counter() - waited
            if batch:
                await self._process(batch, source=source, store=store, dead_letters=dead_letters)
            now = time.monotonic()
            if now - last_commit >= self._settings.commit_interval_seconds:
                await source.commit(self._positions())
                last_commit = now
            if now - last_progress >= 10:
                self._log_progress()
                last_progress = now
        await self._settle()
        await source.commit(self._positions())
        self._log_progress()

    async def _settle(self) -> None:
        """Wait for the flush in flight, if any; its errors surface here."""
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            waited = time.perf_counter()
            await task
            self.stats.flush_wait_seconds += time.perf_counter() - waited

    def _positions(self) -> dict[int, int]:
        return {p: o.offset for p, o in self._owned.items() if o.offset is not None}

    def _log_progress(self) -> None:
        self.stats.log(partitions=sorted(self._owned))

    # -- claiming ----------------------------------------------------------------
    async def _claim_pending(self, source: EventSource, store: AggregateWriter) -> None:
        while self._to_claim and not self._stopping.is_set():
            partition = min(self._to_claim)
            claim = await self._retrying(lambda p=partition: store.claim(p), f"claim p{partition}")  # type: ignore[misc]
            if claim is None:
                return
            if partition not in self._to_claim:  # revoked while we were claiming
                continue
            self._to_claim.discard(partition)
            self._owned[partition] = _Owned(epoch=claim.epoch, offset=claim.offset)
            self._metrics.owned("events", self._owned)
            await source.seek(partition, claim.offset)
            source.resume([partition])
            log.info(
                "partition_claimed", partition=partition, epoch=claim.epoch, offset=claim.offset
            )

    # -- one batch ---------------------------------------------------------------
    async def _process(
        self,
        batch: dict[int, list[Record]],
        *,
        source: EventSource,
        store: AggregateWriter,
        dead_letters: DeadLetters,
    ) -> None:
        deltas: list[tuple[PartitionDelta, list[Record]]] = []
        letters: list[DeadLetter] = []
        for partition, records in batch.items():
            if partition not in self._owned or not records:
                continue  # revoked meanwhile: the new owner reads it from the stored offset
            deltas.append((self._fold(partition, records, letters), records))
        if letters:
            await self._retrying(lambda: dead_letters.publish(letters), "dead-letter publish")
        # One flush in flight: Redis applies this batch while the next one is
        # fetched and folded. Flushes stay in order, so offsets chain per partition.
        await self._settle()
        self._in_flight = asyncio.create_task(
            self._flush_all(deltas, store=store, source=source, dead_letters=dead_letters),
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
        deltas: list[tuple[PartitionDelta, list[Record]]],
        *,
        store: AggregateWriter,
        source: EventSource,
        dead_letters: DeadLetters,
    ) -> None:
        held = [d.partition for d, _ in deltas]
        started = time.perf_counter()
        # Partitions are independent (own keys, own offsets): flush them together.
        await asyncio.gather(
            *(
                self._flush(d, records, store=store, source=source, held=held, letters=dead_letters)
                for d, records in deltas
            )
        )
        self.stats.last_flush_seconds = time.perf_counter() - started
        self.stats.last_flush_at = time.monotonic()
        self.stats.batches += 1
        self._metrics.flush_seconds.observe(self.stats.last_flush_seconds)
        self._observe_lag(source)

    def _observe_lag(self, source: EventSource) -> None:
        self._metrics.partitions.set(len(self._owned))
        for partition, owned in list(self._owned.items()):
            end = source.highwater(partition)
            if end is not None and owned.offset is not None:
                self._metrics.lag.labels(str(partition)).set(max(0, end - owned.offset))

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
        delta: PartitionDelta,
        records: list[Record],
        *,
        store: AggregateWriter,
        source: EventSource,
        held: list[int],
        letters: DeadLetters,
    ) -> None:
        owned = self._owned.get(delta.partition)
        if owned is None:
            return
        try:
            outcome = await self._retrying(
                lambda: store.flush(delta, epoch=owned.epoch, expected_offset=owned.offset),
                f"flush p{delta.partition}",
                pause=(source, held),
            )
        except FencedError as exc:
            self._fenced(delta.partition, owned, exc)
            return
        except FlushRefused as exc:
            log.warning("flush_refused", partition=delta.partition, error=str(exc))
            await self._flush_each(records, owned, store=store, letters=letters)
            return
        if outcome is not None:
            self._applied(delta, owned, outcome)

    def _fenced(self, partition: int, owned: _Owned, exc: FencedError) -> None:
        # Another consumer owns the partition now; it replays from the stored offset.
        self.stats.fenced += 1
        if self._owned.get(partition) is owned:
            del self._owned[partition]
            self._metrics.owned("events", self._owned)
        log.warning("flush_fenced", partition=partition, error=str(exc))

    def _applied(self, delta: PartitionDelta, owned: _Owned, outcome: FlushOutcome) -> None:
        owned.offset = delta.next_offset
        if outcome is FlushOutcome.REPLAYED:
            self.stats.replays += 1
            return
        self.stats.events += delta.events
        self.stats.rejects.update(delta.rejects)
        self._metrics.events.inc(delta.events)
        for reason, count in delta.rejects.items():
            self._metrics.rejects.labels(reason).inc(count)

    async def _flush_each(
        self, records: list[Record], owned: _Owned, *, store: AggregateWriter, letters: DeadLetters
    ) -> None:
        """Flush a refused batch one record at a time, dead-lettering what Redis would refuse.

        Slow, but only ever taken when a flush was refused: it confines the
        refusal to the records behind it, so the rest of the batch is counted.
        """
        for record in records:
            delta = self._fold(record.partition, [record], [])
            try:
                outcome = await self._retrying(
                    lambda d=delta: store.flush(d, epoch=owned.epoch, expected_offset=owned.offset),  # type: ignore[misc]
                    f"flush p{record.partition}",
                )
            except FlushRefused as exc:
                outcome = await self._refuse(record, owned, exc, store=store, letters=letters)
            except FencedError as exc:
                self._fenced(record.partition, owned, exc)
                return
            if outcome is None:
                return
            self._applied(delta, owned, outcome)

    async def _refuse(
        self,
        record: Record,
        owned: _Owned,
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
        backoff = Backoff(
            initial=self._settings.retry_initial_seconds,
            maximum=self._settings.retry_max_seconds,
            stopping=self._stopping,
        )
        if pause is None:
            return await retrying(call, what=what, backoff=backoff)
        source, held = pause
        return await retrying(
            call,
            what=what,
            backoff=backoff,
            on_outage=lambda: source.pause(held),
            on_recovery=lambda: source.resume([p for p in held if p in self._owned]),
        )
