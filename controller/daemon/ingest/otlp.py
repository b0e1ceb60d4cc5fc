"""Folding records of the OpenTelemetry Collector's Kafka topics.

The Collector's Kafka exporter writes one export request per record (traces
on ``otlp_spans``, logs on ``otlp_logs``), in protobuf or OTLP/JSON. An
:class:`OtlpFolder` is the :class:`~.batches.Folding` of a second
:class:`~.ingest.Ingest` over such a topic: it decodes each record as an
export (the decoder is given: protobuf is an adapter's business), translates
its spans or log records into our events
(:class:`~controller.core.telemetry.Translator`, at the record's timestamp)
and folds them into the partition's delta, so their offsets and aggregates
are flushed together, exactly once, as the events topic's are.

What is not counted is dead-lettered with its reason, and the rest of the
record is counted: a record that is no export at all gives one letter (the
record, with the decoder's reason), each refused span, log record or
evaluation one letter (the first letter of a record carries the record; each
names the refused item in its ``otlp.item`` header and its detail). An
evaluation of a flag no rollout published (``no_rollout``: an app's ordinary
flag) is no error: counted in ``rollout_otlp_ignored_evaluations_total``, not
dead-lettered. Nor is an evaluation too near a version change (``guarded``):
it is counted apart, in the ``otlp_progress`` log line, with the evaluations
counted at request level (no unit named) and those whose request outcome
never arrived (``unmatched``).

Every event's id derives from its trace, span and flag, so a Collector that
sends the same spans again, under new offsets or on another partition,
counts once: the flush refuses ids it counted within the id window, and the
batch is folded again without them.

Joins of evaluations to request spans that arrive in different records wait
in the translator's join buffer, in memory, while each record's own counts
are flushed at once. So each flush also stores the partition's *rejoin*
offset (:class:`~controller.core.telemetry.RejoinMarks`: the first record
whose leftovers may still wait), and a new claim (a restart, a rebalance)
reads the records from there to the counted offset again for their joins only
(:meth:`OtlpFolder.rejoin`). A join such a record completes with a half read
fresh is folded with the next fresh batch (it may not have been counted; the
id window counts it once); one of two replayed halves was counted before.
See docs/architecture.md, *Joins across a restart*.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from controller.core.stats import PartitionDelta, fold
from controller.core.telemetry import (
    WHOLE_BODY,
    Bounds,
    Logs,
    Refusal,
    RejoinMarks,
    Spans,
    Translated,
    Translator,
)
from controller.core.wire import InEvent
from controller.daemon.ingest.batches import continued
from controller.ports import DeadLetter, Record

log = structlog.get_logger("controller.daemon.ingest.otlp")

DecodeSpans = Callable[[bytes, Bounds], Spans | Refusal]
DecodeLogs = Callable[[bytes, Bounds], Logs | Refusal]
ITEM_HEADER = "otlp.item"
"""The dead letter's header naming the refused item's index in its export."""
NOT_LETTERED = frozenset({"guard_interval"})
"""Reasons an item is not counted that are no error, so not dead-lettered."""
LOG_EVERY_SECONDS = 10.0


@dataclass(slots=True)
class _Item:
    """A dead letter's record: the export's record, or only its coordinates (later letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(slots=True)
class OtlpTally:
    """What an OTLP topic's folds saw, beside what they counted (logged now and then)."""

    records: int = 0
    items: int = 0
    request_level: int = 0
    no_rollout: int = 0
    guarded: int = 0
    unmatched: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def log(self, topic: str) -> None:
        log.info(
            "otlp_progress",
            topic=topic,
            records=self.records,
            items=self.items,
            request_level=self.request_level,
            no_rollout=self.no_rollout,
            guarded=self.guarded,
            unmatched=self.unmatched,
            refused=dict(self.refused),
        )


class OtlpFolder:
    """Decodes records of one OTLP topic, translates them and folds the events into deltas."""

    def __init__(
        self,
        *,
        topic: str,
        decode: DecodeSpans | DecodeLogs,
        translator: Translator,
        bounds: Bounds | None = None,
        max_record_bytes: int = 8 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        ignored: Callable[[int], None] = lambda _: None,
    ) -> None:
        """``ignored``: told how many evaluations of flags no rollout published a record had."""
        self._topic, self._decode, self._ignored = topic, decode, ignored
        self._translator = translator
        self._bounds = bounds or Bounds()
        self._max_bytes, self._clock = max_record_bytes, clock
        self.tally = OtlpTally()
        self._logged = time.monotonic()
        self._marks = RejoinMarks(window_ms=translator.join_window_ms)
        self._folded: dict[int, dict[int, tuple[list[InEvent], Counter[str]]]] = {}
        """Per partition, what each record not yet flushed gave (its events, the replay's
        joins it carries, its rejects): a refused flush folds its records again, and the
        join buffer, which moved on, would not give them again."""
        self._starts: dict[int, int] = {}
        """Per partition, the first offset of the last delta begun."""

    def fold(
        self,
        partition: int,
        records: list[Record],
        rejected: list[DeadLetter],
        *,
        known: frozenset[str] = frozenset(),
        into: PartitionDelta | None = None,
    ) -> PartitionDelta:
        """Fold the events of ``records`` (non-empty, in offset order) into a delta.

        What is not counted is counted in the delta's rejects and appended to
        ``rejected``; events whose id is ``known`` or repeats one are skipped.
        With ``into``, the records follow that delta's and are folded on into it.
        """
        delta = continued(into, partition, records, known)
        events = self._translate(partition, records, delta, rejected, new=into is None)
        fold(events, delta.cells, seen=delta.seen)
        delta.rejoin = self._marks.position(partition, delta.next_offset)
        if time.monotonic() - self._logged >= LOG_EVERY_SECONDS:
            self._logged = time.monotonic()
            self.tally.log(self._topic)
        return delta

    def claimed(self, partition: int) -> None:
        """A new claim reads ``partition`` from its rejoin offset."""
        self._marks.forget(partition)
        self._folded.pop(partition, None)
        self._starts.pop(partition, None)

    def rejoin(self, partition: int, records: list[Record]) -> None:
        """Translate ``records`` (counted before) again for what they leave to be joined."""
        for record in records:
            value = record.value
            if value is None or len(value) > self._max_bytes:
                continue
            try:
                self._translated(record, value, replaying=True)
            except Exception:  # as in _record: counted before, so only logged here
                log.exception("otlp_rejoin_unreadable", partition=partition, offset=record.offset)

    def loose(self, partition: int, next_offset: int) -> tuple[list[InEvent], int | None]:
        """The replay's joins no fresh record took (emptied), and the rejoin offset at
        ``next_offset``: a replay that ends the partition's records (no fresh record follows
        it on any partition of either topic) would leave them waiting for ever."""
        return self._translator.take_ready(), self._marks.position(partition, next_offset)

    def _translate(
        self,
        partition: int,
        records: list[Record],
        delta: PartitionDelta,
        rejected: list[DeadLetter],
        *,
        new: bool,
    ) -> list[InEvent]:
        """The events of ``records``: translated once, then what they gave (a refold)."""
        kept, first = self._folded.setdefault(partition, {}), records[0].offset
        if new:  # the deltas before the last one began were flushed (one flush at a time)
            below = min(first, self._starts.get(partition, first))
            for offset in [o for o in kept if o < below]:
                del kept[offset]
            self._starts[partition] = first
        else:  # into a delta of joins alone: these records begin what it flushes
            self._starts.setdefault(partition, first)
        ready, events = self._translator.take_ready(), []
        for record in records:
            gave = kept.get(record.offset)
            if gave is None:
                rejects = Counter[str]()
                gave = kept[record.offset] = (self._record(record, rejects, rejected), rejects)
            events += gave[0]
            delta.rejects.update(gave[1])
        if ready:  # the replay's joins ride with the first record
            kept[first][0].extend(ready)
            events += ready
        return events

    def _translated(self, record: Record, value: bytes, *, replaying: bool) -> Translated | Refusal:
        """The translation of one record's export (the time is the record's), and where it
        leaves what it holds for a later record to join."""
        decoded = self._decode(value, self._bounds)
        if isinstance(decoded, Refusal):
            return decoded
        now_ms = _timestamp(record) or int(self._clock() * 1000)
        self._marks.folded(record.partition, record.offset, now_ms)
        if isinstance(decoded, Spans):
            self.tally.items += 0 if replaying else len(decoded.spans)
            translated = self._translator.spans(decoded, now_ms, replaying=replaying)
        else:
            self.tally.items += 0 if replaying else len(decoded.records)
            translated = self._translator.logs(decoded, now_ms, replaying=replaying)
        translated.refused[:0] = decoded.refused
        return translated

    def _record(
        self, record: Record, rejects: Counter[str], rejected: list[DeadLetter]
    ) -> list[InEvent]:
        """The events of one record; what of it is not counted goes to ``rejected``."""
        self.tally.records += 1
        value = record.value
        if value is None:
            self._refuse(record, [Refusal(WHOLE_BODY, "empty", "no value")], rejects, rejected)
            return []
        if len(value) > self._max_bytes:
            detail = f"{len(value)} bytes > {self._max_bytes}"
            self._refuse(record, [Refusal(WHOLE_BODY, "oversize", detail)], rejects, rejected)
            return []
        try:
            translated = self._translated(record, value, replaying=False)
            if isinstance(translated, Refusal):
                self._refuse(record, [translated], rejects, rejected)
                return []
        except Exception as exc:  # a record no decoder foresaw: never the loop's end
            log.exception(
                "otlp_record_unreadable", partition=record.partition, offset=record.offset
            )
            refusal = Refusal(WHOLE_BODY, "malformed", f"unreadable: {exc!r}"[:200])
            self._refuse(record, [refusal], rejects, rejected)
            return []
        tally = self.tally
        tally.request_level += translated.request_level
        tally.guarded += translated.guarded
        if translated.no_rollout:
            tally.no_rollout += translated.no_rollout
            self._ignored(translated.no_rollout)
        tally.unmatched += translated.unmatched
        if translated.refused:
            self._refuse(record, translated.refused, rejects, rejected)
        return translated.events

    def _refuse(
        self,
        record: Record,
        refusals: list[Refusal],
        rejects: Counter[str],
        rejected: list[DeadLetter],
    ) -> None:
        """Count and dead-letter ``refusals`` of ``record``; the first letter carries it."""
        value, reasons = record.value, Counter[str]()
        for refusal in refusals:
            reason = refusal.reason
            self.tally.refused[reason] += 1
            if reason in NOT_LETTERED:
                continue
            reasons[reason] += 1
            headers = tuple(record.headers or ())
            detail = refusal.detail
            if refusal.index != WHOLE_BODY:
                headers += ((ITEM_HEADER, str(refusal.index).encode()),)
                detail = f"item {refusal.index}: {detail}"
            item = _Item(record.topic, record.partition, record.offset, record.key, value, headers)
            rejected.append(DeadLetter(item, reason, detail))
            value = None
        rejects.update(reasons)
        if reasons:  # one line a record, however many of its items were refused
            first = next(r for r in refusals if r.reason in reasons)
            log.warning(
                "otlp_rejected",
                reasons=dict(reasons),
                first=first.detail,
                partition=record.partition,
                offset=record.offset,
            )


def _timestamp(record: Record) -> int | None:
    """The record's timestamp (ms), when the broker gave one."""
    stamp = getattr(record, "timestamp", None)
    return stamp if type(stamp) is int and stamp > 0 else None
