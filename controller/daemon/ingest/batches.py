"""One partition's share of a fetched batch: its records decoded and folded into a delta.

Records are decoded a span at a time (:meth:`EventDecoder.decode_many`, one
call into msgspec for the whole span) and folded straight into the
partition's cells. A span the batch decoder refuses is halved until the
halves are small, and the records of a small refused span take the
per-record path (:meth:`EventDecoder.decode`), which classifies each
rejection and is the reference both paths answer to. Either way events are
folded in record order, so the float sums, and therefore what Redis stores,
are the same to the last bit whichever path a record took. Both paths fold
an event id once per delta (:class:`~controller.core.stats.folding.Seen`); a
refold names the ids the store already counted, which are skipped too.

Where the native extension is installed (:mod:`.native_fold`), a span is
offered to it first: it decodes and folds a span of plain records in one call,
exactly as the two steps above would, or answers that it did not, having
changed nothing, and the span takes the Python path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol

import structlog

from controller.core.stats import PartitionDelta, Seen, fold
from controller.core.wire import EventDecoder, InEvent, Rejection
from controller.daemon.ingest.native_fold import native_folder
from controller.daemon.ingest.partitions import Owned
from controller.ports import DeadLetter, Record

log = structlog.get_logger("controller.daemon.ingest.ingest")
_SMALLEST_SPAN = 32
"""A refused span at most this long is decoded record by record."""
_value_of = attrgetter("value")


@dataclass(slots=True)
class Work:
    """One partition's share of a batch, with the claim it was read under."""

    delta: PartitionDelta
    records: list[Record]
    owned: Owned
    joins: list[InEvent] = field(default_factory=list)
    """Events no record of the partition gives, folded in before its records: the joins a
    restart's replay completed with a half read fresh (:meth:`Folding.loose`)."""


def loose_delta(
    partition: int,
    next_offset: int,
    joins: list[InEvent],
    known: frozenset[str],
    rejoin: int | None,
) -> PartitionDelta:
    """A delta of ``joins`` alone, at ``next_offset`` (the offset stored: no record moves it;
    the flush's id window counts them once), skipping ``known`` ids."""
    delta = PartitionDelta(
        partition=partition, next_offset=next_offset, seen=Seen.skipping(known), rejoin=rejoin
    )
    fold(joins, delta.cells, seen=delta.seen)
    return delta


def refold(folder: Folding, work: Work, known: frozenset[str]) -> PartitionDelta:
    """``work``'s delta folded again without the events whose id is ``known`` (counted
    before): its joins first, then its records, in the order they were folded; at the
    same next offset (past the markers the consumer read after the records, if any)."""
    partition, end = work.delta.partition, work.delta.next_offset
    if not work.joins:
        delta = folder.fold(partition, work.records, [], known=known)
    else:
        delta = loose_delta(partition, end, work.joins, known, work.delta.rejoin)
        if work.records:
            delta = folder.fold(partition, work.records, [], into=delta)
    delta.next_offset = end
    return delta


def continued(
    into: PartitionDelta | None, partition: int, records: list[Record], known: frozenset[str]
) -> PartitionDelta:
    """The delta ``records`` fold into: ``into`` moved past them, or a new one."""
    if into is None:
        return PartitionDelta(
            partition=partition, next_offset=records[-1].offset + 1, seen=Seen.skipping(known)
        )
    into.next_offset = records[-1].offset + 1
    return into


class Folding(Protocol):
    """What ingest folds a partition's records with: the events stream's :class:`Folder`,
    or another source's (the OpenTelemetry topics'), which reads its own records."""

    def fold(
        self,
        partition: int,
        records: list[Record],
        rejected: list[DeadLetter],
        *,
        known: frozenset[str] = frozenset(),
        into: PartitionDelta | None = None,
    ) -> PartitionDelta:
        """Fold ``records`` (non-empty, in offset order) of ``partition`` into a delta whose
        ``next_offset`` follows the last of them; what is not counted goes to ``rejected``
        (and the delta's rejects); an event whose id is ``known`` or repeats is skipped.
        With ``into`` (a delta of the records just before these), they are folded on into
        it, and it is returned."""
        ...

    def claimed(self, partition: int) -> None:
        """A new claim reads ``partition``: what the folder kept of an earlier one goes."""
        ...

    def rejoin(self, partition: int, records: list[Record]) -> None:
        """Read ``records`` (counted before a restart) again, only for the joins they left
        waiting; nothing of them is counted."""
        ...

    def loose(self, partition: int, next_offset: int) -> tuple[list[InEvent], int | None]:
        """The joins replays completed with a half read fresh that no fresh record has
        taken yet (emptied), and where ``partition`` is read again from at ``next_offset``:
        a replay that ends a partition's records must not leave them waiting for a record
        that may never come."""
        ...


class Folder:
    """Decodes records of the events stream and folds them into per-partition deltas."""

    def __init__(self, *, max_event_bytes: int, native: bool = True) -> None:
        """``native=False`` folds with the Python path alone (benchmarks compare the two)."""
        self._decoder = EventDecoder(max_bytes=max_event_bytes)
        self._native = native_folder(max_event_bytes) if native else None

    def fold(
        self,
        partition: int,
        records: list[Record],
        rejected: list[DeadLetter],
        *,
        known: frozenset[str] = frozenset(),
        into: PartitionDelta | None = None,
    ) -> PartitionDelta:
        """Fold ``records`` (non-empty, in offset order) of ``partition`` into a delta.

        Records that are not valid events are counted in the delta's rejects
        and appended to ``rejected``, for the dead-letter queue. Events whose
        id is ``known`` (counted before) or repeats one before it are skipped.
        With ``into``, the records follow that delta's and are folded on into it.
        """
        delta = continued(into, partition, records, known)
        self._fold_span(delta, records, list(map(_value_of, records)), rejected)
        return delta

    def claimed(self, partition: int) -> None:
        """Events join nothing: nothing is kept across claims."""

    def rejoin(self, partition: int, records: list[Record]) -> None:
        """Events join nothing: no claim of the events topic reads records again."""

    def loose(self, partition: int, next_offset: int) -> tuple[list[InEvent], int | None]:
        """Events join nothing: none is ever left over."""
        return [], None

    def _fold_span(
        self,
        delta: PartitionDelta,
        records: list[Record],
        values: list[bytes | None],
        rejected: list[DeadLetter],
    ) -> None:
        native = self._native
        if native is not None and native.fold(
            values, delta.cells, delta.seen.ids, self._decoder.flag_ok
        ):
            return
        events = self._decoder.decode_many(values)
        if events is not None:
            refused = fold(events, delta.cells, flag_ok=self._decoder.flag_ok, seen=delta.seen)
            if refused is None:
                return
            # A flag the pattern refuses: the events before it are folded.
            start = next(i for i, event in enumerate(events) if event is refused)
            self._fold_each(delta, records[start:], rejected)
        elif len(records) > _SMALLEST_SPAN:
            half = len(records) // 2
            self._fold_span(delta, records[:half], values[:half], rejected)
            self._fold_span(delta, records[half:], values[half:], rejected)
        else:
            self._fold_each(delta, records, rejected)

    def _fold_each(
        self, delta: PartitionDelta, records: list[Record], rejected: list[DeadLetter]
    ) -> None:
        decode = self._decoder.decode
        events: list[InEvent] = []
        for record in records:
            decoded = decode(record.value)
            if isinstance(decoded, Rejection):
                reason = decoded.reason.value
                rejected.append(DeadLetter(record, reason, decoded.detail))
                delta.rejects[reason] += 1
                log.warning(
                    "event_rejected",
                    reason=reason,
                    detail=decoded.detail,
                    partition=delta.partition,
                    offset=record.offset,
                )
            else:
                events.append(decoded)
        fold(events, delta.cells, seen=delta.seen)
