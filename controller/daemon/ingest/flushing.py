"""Ingest's flushes: each partition's delta into Redis, fenced, at most one flush in flight.

A :class:`Flusher` is bound, for one run of the ingest loop, to the ports a
flush talks to: the events source (paused while Redis is unreachable), the
aggregate store and the dead-letter queue. How a flush ends decides what
happens to its partition: applied (the claim advances), replayed (nothing
new), fenced (dropped) or lost writes (claimed again and replayed), all in
:mod:`.partitions`; a refused flush is taken again record by record so that
only the records behind the refusal are dead-lettered. A flush that finds
events the partition counted before (the same ids, within the id window) is
folded again without them and flushed: a retried or re-batched copy counts
once (docs/architecture.md, "Event ids").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, TypeVar

import structlog

from controller.core.common import DuplicateEvents, FencedError, FlushRefused, LostWrites
from controller.core.rollouts import RaiseAlert
from controller.core.stats import PartitionDelta
from controller.core.wire import MAX_DETAIL_CHARS, RejectReason
from controller.daemon.ingest.batches import Folding, Work, loose_delta, refold
from controller.daemon.ingest.partitions import Owned, Partitions
from controller.daemon.ingest.progress import IngestStats
from controller.daemon.metrics import Metrics
from controller.ports import (
    AggregateWriter,
    DeadLetter,
    DeadLetters,
    EventSource,
    FlushOutcome,
    Record,
)

log = structlog.get_logger("controller.daemon.ingest.ingest")
T = TypeVar("T")
Alarm = Callable[[RaiseAlert], None]
"""Raises an alert that concerns no flag (published on the alerts topic)."""


class Retry(Protocol):
    """Runs a call until it succeeds, backing off while it fails retriably; None if stopped."""

    async def __call__(
        self,
        call: Callable[[], Awaitable[T]],
        what: str,
        *,
        on_outage: Callable[[], None] | None = None,
    ) -> T | None: ...


class Flusher:
    """Flushes the ingest loop's batches through the ports of one run."""

    def __init__(
        self,
        *,
        source: EventSource,
        store: AggregateWriter,
        dead_letters: DeadLetters,
        parts: Partitions,
        folder: Folding,
        retry: Retry,
        stats: IngestStats,
        metrics: Metrics,
        alarm: Alarm | None,
    ) -> None:
        self._source = source
        self._store = store
        self._dead_letters = dead_letters
        self._parts = parts
        self._folder = folder
        self._retry = retry
        self._stats = stats
        self._metrics = metrics
        self._alarm = alarm
        self._in_flight: asyncio.Task[None] | None = None
        self.outage = False
        """Whether a flush found Redis unreachable and paused fetching (until it ends)."""

    async def dead_letter(self, rejected: list[DeadLetter]) -> None:
        """Publish records that are not valid events, and wait for the broker's ack."""
        await self._retry(lambda: self._dead_letters.publish(rejected), "dead-letter publish")

    @property
    def busy(self) -> bool:
        """Whether a flush is in flight and not yet ended."""
        return self._in_flight is not None and not self._in_flight.done()

    def start(self, work: list[Work]) -> None:
        """Flush ``work`` in the background; call :meth:`settle` first."""
        self._in_flight = asyncio.create_task(self._flush_all(work), name="ingest-flush")

    async def settle(self) -> None:
        """Wait for the flush in flight, if any; its errors surface here."""
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            waited = time.perf_counter()
            await task
            self._stats.flush_wait_seconds += time.perf_counter() - waited

    async def _flush_all(self, work: list[Work]) -> None:
        held = [w.delta.partition for w in work]
        started = time.perf_counter()
        try:
            # Partitions are independent (own keys, own offsets): flush them together.
            await asyncio.gather(*(self._flush(w, held) for w in work))
        finally:
            # An outage in one partition's flush paused them all; however each
            # flush ended (applied, fenced, lost), the ones still owned go on.
            if self.outage:
                self.outage = False
                self._source.resume(self._parts.resumable(held))
        stats = self._stats
        stats.last_flush_seconds = time.perf_counter() - started
        stats.last_flush_at = time.monotonic()
        stats.batches += 1
        self._metrics.flush_seconds.observe(stats.last_flush_seconds)
        self._parts.observe_lag(self._source)

    async def _flush(self, work: Work, held: list[int]) -> None:
        delta, owned = work.delta, work.owned

        def pause() -> None:
            # Resumed when the whole flush has ended, however each partition's ended.
            self.outage = True
            self._source.pause(held)

        try:
            outcome = await self._counted_once(work, on_outage=pause)
        except FencedError as exc:
            self._fenced(delta.partition, owned, exc)
            return
        except LostWrites as exc:
            self._lost(delta.partition, owned, exc)
            return
        except FlushRefused as exc:
            log.warning("flush_refused", partition=delta.partition, error=str(exc))
            await self._flush_each(work)
            return
        if outcome is not None:
            self._applied(work.delta, owned, outcome)

    async def _counted_once(
        self, work: Work, *, on_outage: Callable[[], None] | None = None
    ) -> FlushOutcome | None:
        """Flush ``work``; while the store names events it counted before, fold without them.

        Each round adds the ids the store named, so it ends: at worst every
        event is skipped and the flush only advances the offset.
        """
        known = frozenset[str]()
        while True:
            try:
                return await self._flush_delta(work.delta, work.owned, on_outage)
            except DuplicateEvents as exc:
                known |= exc.ids
                work.delta = refold(self._folder, work, known)

    async def _flush_delta(
        self, delta: PartitionDelta, owned: Owned, on_outage: Callable[[], None] | None
    ) -> FlushOutcome | None:
        return await self._retry(
            lambda: self._store.flush(
                delta, epoch=owned.epoch, expected_offset=owned.offset, log=owned.log
            ),
            f"flush p{delta.partition}",
            on_outage=on_outage,
        )

    def _fenced(self, partition: int, owned: Owned, exc: FencedError) -> None:
        self._stats.fenced += 1
        self._parts.fenced(partition, owned, exc)

    def _lost(self, partition: int, owned: Owned, exc: LostWrites) -> None:
        """Redis lost acknowledged writes of ``partition``: replay them, and tell people."""
        alert = self._parts.lost(partition, owned, exc, self._source)
        if alert is not None:
            self._stats.lost_writes += 1
            if self._alarm is not None:
                self._alarm(alert)

    def _applied(self, delta: PartitionDelta, owned: Owned, outcome: FlushOutcome) -> None:
        self._parts.advanced(delta.partition, owned, delta.next_offset)
        if outcome is FlushOutcome.REPLAYED:
            self._stats.replays += 1
            return
        self._stats.events += delta.events
        self._stats.rejects.update(delta.rejects)
        self._metrics.events.inc(delta.events)
        if delta.seen.repeats:
            self._stats.duplicates += delta.seen.repeats
            self._metrics.duplicates.inc(delta.seen.repeats)
        for reason, count in delta.rejects.items():
            self._metrics.rejects.labels(reason).inc(count)

    async def _flush_each(self, work: Work) -> None:
        """Flush a refused batch one record at a time, dead-lettering what Redis would refuse.

        Slow, but only ever taken when a flush was refused: it confines the
        refusal to the records behind it, so the rest of the batch is counted.
        """
        owned, partition = work.owned, work.delta.partition
        for record, one in self._singles(work):
            try:
                outcome = await self._counted_once(one)
            except FlushRefused as exc:
                if record is None:  # joins or offsets alone: no record to dead-letter
                    log.warning("joins_refused", partition=partition, error=str(exc))
                    continue
                outcome = await self._refuse(record, owned, exc)
            except FencedError as exc:
                self._fenced(partition, owned, exc)
                return
            except LostWrites as exc:
                self._lost(partition, owned, exc)
                return
            if outcome is None:
                return
            self._applied(one.delta, owned, outcome)

    def _singles(self, work: Work) -> Iterator[tuple[Record | None, Work]]:
        """``work`` as works of one record each (folded as they are reached), after its
        joins alone at the stored offset (a replay's: an offset was stored), and before
        the offsets the consumer read past after them (markers, aborted records), alone."""
        owned, partition, end = work.owned, work.delta.partition, work.delta.next_offset
        if work.joins and owned.offset is not None:
            rejoin = work.delta.rejoin
            joins = loose_delta(partition, owned.offset, work.joins, frozenset(), rejoin)
            yield None, Work(joins, [], owned, work.joins)
        for record in work.records:
            yield record, Work(self._folder.fold(record.partition, [record], []), [record], owned)
        if owned.offset is None or owned.offset < end:  # as each single applied moved it
            yield None, Work(PartitionDelta(partition=partition, next_offset=end), [], owned)

    async def _refuse(self, record: Record, owned: Owned, exc: FlushRefused) -> FlushOutcome | None:
        """Dead-letter one record the store refused and move the offset past it."""
        reason = RejectReason.STORE_REFUSED.value
        log.warning(
            "event_rejected", reason=reason, partition=record.partition, offset=record.offset
        )
        letter = DeadLetter(record, reason, str(exc)[:MAX_DETAIL_CHARS])
        await self._retry(lambda: self._dead_letters.publish([letter]), "dead-letter publish")
        skip = PartitionDelta(partition=record.partition, next_offset=record.offset + 1)
        skip.rejects[reason] += 1
        return await self._retry(
            lambda: self._store.flush(
                skip, epoch=owned.epoch, expected_offset=owned.offset, log=owned.log
            ),
            f"flush p{record.partition}",
        )
