"""A span of time read back from topics: what ``rolloutctl audit export`` reads.

:class:`SpanReader` finds, in every partition of its topics, the first offset
written at or after ``since`` and the first at or after ``until`` (the broker's
time index, ``offsets_for_times``), and reads the records between them, no group
and no offsets left on the broker. A partition with nothing written since
``since`` is not read at all. Records whose own timestamp lies outside the
span (a producer's clock may run backwards) are left out, so what is read is
exactly the records stamped ``since <= t < until`` from where the index
placed the span.

Not every Kafka-compatible broker keeps a time index: the embedded broker names
offset 0 for any instant, and as a partition's end the first offset of its last
batch plus one. So a partition's end is the further of what ListOffsets names and
a fetch's high watermark, and each time index answer is checked against the
records just around it (:mod:`controller.core.common.time_index`); a partition
whose records contradict it is read from its beginning to its end instead, named
in :attr:`SpanReader.whole`. A record without a timestamp cannot be placed in time:
reading one raises :class:`BrokerError` rather than leave it out unsaid.

Each partition's offsets read over are named in :attr:`SpanReader.read`, an empty
span's too, so that "nothing happened" is told from "nothing was read". A log
whose first records are gone (deleted, or past retention) may have lost some of
the span: where a partition's log starts past offset 0 and its first record left
is stamped at or after ``since`` (or none is left), what was before it cannot be
placed in time, and the partition is named in :attr:`SpanReader.gone`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndTimestamp

from controller.core.common import BrokerError, time_index
from controller.core.trust import AuditType, PublishedRecord
from controller.kit.kafka_client import ClientLifecycle, topics_partitions, translated
from controller.settings import KafkaSettings

FETCH_MAX_RECORDS = 5_000
FETCH_TIMEOUT_MS = 500
"""The longest a fetch waits for records; a stalled broker is told apart by ``idle_s``."""
PROBE_RECORDS = 2
"""Records read around a time index's answer: the one before the offset and the one at it."""


@dataclass(frozen=True, slots=True)
class _Range:
    start: int
    stop: int


class SpanReader(ClientLifecycle):
    """The records of ``topics`` (each with the audit type it carries) stamped within
    ``[since_ms, until_ms)``.

    Starting raises :class:`BrokerError` when no topic exists or the broker does not
    answer within ``timeout_s``; topics that do not exist are named in :attr:`missing`.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Mapping[str, AuditType],
        *,
        since_ms: int,
        until_ms: int,
        timeout_s: float | None = None,
        idle_s: float = 60.0,
    ) -> None:
        self._idle_s = idle_s
        self._kinds = dict(topics)
        self._since_ms = since_ms
        self._until_ms = until_ms
        self._context = f"cannot read {', '.join(topics)}"
        self._bootstrap = kafka.bootstrap_servers
        self._start_timeout_s = timeout_s
        self._ranges: dict[TopicPartition, _Range] = {}
        self.missing: list[str] = []
        """The topics asked for that do not exist."""
        self.whole: dict[str, str] = {}
        """Each partition (``topic/partition``) read whole, and how its time index was wrong."""
        self.read: list[tuple[str, int, int, int]] = []
        """Each partition's (topic, partition, first offset, end offset) read over."""
        self.gone: dict[str, str] = {}
        """Each partition (``topic/partition``) whose log may have lost some of the span."""
        options = kafka.client_options() | {"client_id": "rolloutctl-audit"}
        self._client = self._consumer = AIOKafkaConsumer(
            **options, enable_auto_commit=False, auto_offset_reset="earliest"
        )

    @property
    def total(self) -> int:
        """How many records the span's offsets hold, an upper bound of what is read."""
        return sum(r.stop - r.start for r in self._ranges.values())

    async def _on_started(self) -> None:
        found = await topics_partitions(self._consumer, list(self._kinds))
        self.missing = [topic for topic in self._kinds if topic not in found]
        if not found:
            raise BrokerError(f"none of the topics {', '.join(self._kinds)} exists")
        partitions = [TopicPartition(t, p) for t, ps in sorted(found.items()) for p in sorted(ps)]
        self._consumer.assign(partitions)
        self._ranges = await self._span(partitions)
        for partition, span in self._ranges.items():
            self._consumer.seek(partition, span.start)

    async def _span(self, partitions: list[TopicPartition]) -> dict[TopicPartition, _Range]:
        with translated("reading the topics' offsets failed", bootstrap=self._bootstrap):
            begins = await self._consumer.beginning_offsets(partitions)
            ends = await self._consumer.end_offsets(partitions)
            starts = await self._consumer.offsets_for_times(
                dict.fromkeys(partitions, self._since_ms)
            )
            stops = await self._consumer.offsets_for_times(
                dict.fromkeys(partitions, self._until_ms)
            )
        bounds = await self._bounds({p: _Range(begins[p], ends[p]) for p in partitions})
        first = {p: _answer(starts.get(p), bounds[p]) for p in partitions}
        last = {p: _answer(stops.get(p), bounds[p]) for p in partitions}
        wrong = await self._contradicted(self._since_ms, first, bounds)
        wrong |= await self._contradicted(self._until_ms, last, bounds)
        self.whole = {f"{p.topic}/{p.partition}": why for p, why in sorted(wrong.items())}
        self.gone = await self._gone(bounds)
        ranges = {}
        for partition in partitions:
            whole = partition in wrong
            span = bounds[partition] if whole else _Range(first[partition], last[partition])
            self.read.append((partition.topic, partition.partition, span.start, span.stop))
            if span.start < span.stop:
                ranges[partition] = span
        return ranges

    async def _gone(self, bounds: Mapping[TopicPartition, _Range]) -> dict[str, str]:
        """The partitions whose log starts past offset 0 with no record left stamped before
        ``since``: the records before it may have been in the span. Why, for each."""
        cut = {p: span.start for p, span in bounds.items() if span.start > 0}
        firsts = await self._around({p: at for p, at in cut.items() if at < bounds[p].stop}, bounds)
        gone = {}
        for partition, begin in sorted(cut.items()):
            left = firsts.get(partition, [])
            if left and left[0].timestamp_ms < self._since_ms:
                continue
            first = f"stamped {time_index.instant(left[0].timestamp_ms)}" if left else "none left"
            gone[f"{partition.topic}/{partition.partition}"] = (
                f"the log starts at offset {begin} (its first record {first}): the "
                f"{begin:,} before it are gone (deleted, or past retention), and some may "
                "have been in the span"
            )
        return gone

    async def _bounds(
        self, listed: Mapping[TopicPartition, _Range]
    ) -> dict[TopicPartition, _Range]:
        """Each partition's first offset and end: the end ListOffsets names, or the high
        watermark of a fetch from just before it where that is further (the embedded broker
        names the first offset of the last batch, plus one)."""
        probes = {p: span.stop - 1 for p, span in listed.items() if span.start < span.stop}
        await self._around(probes, listed)
        bounds = {}
        for partition, span in listed.items():
            fetched_end = self._consumer.highwater(partition) if partition in probes else None
            bounds[partition] = _Range(span.start, max(span.stop, fetched_end or 0))
        return bounds

    async def _contradicted(
        self,
        at_ms: int,
        answers: Mapping[TopicPartition, int],
        bounds: Mapping[TopicPartition, _Range],
    ) -> dict[TopicPartition, str]:
        """The partitions whose records contradict the index's answer for ``at_ms``, and why."""
        probes = {}
        for p, offset in answers.items():
            span = bounds[p]
            if (
                start := time_index.probe_from(offset, begin=span.start, end=span.stop)
            ) is not None:
                probes[p] = start
        around = await self._around(probes, bounds)
        wrong = {}
        when = time_index.instant(at_ms)
        for p, offset in answers.items():
            span = bounds[p]
            why = time_index.contradiction(
                at_ms, offset, begin=span.start, end=span.stop, around=around.get(p, [])
            )
            if why is not None:
                wrong[p] = f"the index names offset {offset} for {when}, but {why}"
        return wrong

    async def _around(
        self, probes: Mapping[TopicPartition, int], bounds: Mapping[TopicPartition, _Range]
    ) -> dict[TopicPartition, list[time_index.Stamped]]:
        """The first :data:`PROBE_RECORDS` records of each partition from its probe offset."""
        read: dict[TopicPartition, list[time_index.Stamped]] = {p: [] for p in probes}
        for partition, offset in probes.items():
            self._consumer.seek(partition, offset)
        left, loop = set(probes), asyncio.get_running_loop()
        moved_at = loop.time()
        while left:
            with translated("reading the time index's records failed", bootstrap=self._bootstrap):
                fetched = await self._consumer.getmany(
                    *left, timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS
                )
                positions = {p: await self._consumer.position(p) for p in left}
            for partition, records in fetched.items():
                taken = read[partition]
                taken += [_stamped(r) for r in records[: PROBE_RECORDS - len(taken)]]
            done = {
                p for p in left if len(read[p]) >= PROBE_RECORDS or positions[p] >= bounds[p].stop
            }
            if fetched or done:
                moved_at = loop.time()
            elif loop.time() - moved_at > self._idle_s:
                raise BrokerError(
                    f"reading the time index's records stalled for {self._idle_s:.0f} s"
                )
            left -= done
        return read

    async def batches(self) -> AsyncIterator[list[PublishedRecord]]:
        """The span's records, a batch at a time, in order per partition.

        A partition is done once its position reaches the span's end, so an end offset
        that compaction removed or that a transaction marker holds does not keep it open.
        Raises :class:`BrokerError` when nothing moves for ``idle_s``.
        """
        left = dict(self._ranges)
        for partition in set(self._consumer.assignment()) - set(left):
            self._consumer.pause(partition)
        loop = asyncio.get_running_loop()
        moved_at = loop.time()
        while left:
            records = await self._fetch(left)
            done = await self._done(left)
            if records or done:
                moved_at = loop.time()
            elif loop.time() - moved_at > self._idle_s:
                raise BrokerError(f"reading stalled for {self._idle_s:.0f} s")
            for partition in done:
                self._consumer.pause(partition)
                del left[partition]
            yield [r for r in records if self._since_ms <= r.timestamp_ms < self._until_ms]

    async def _fetch(self, left: Mapping[TopicPartition, _Range]) -> list[PublishedRecord]:
        with translated("reading failed", bootstrap=self._bootstrap):
            fetched = await self._consumer.getmany(
                timeout_ms=FETCH_TIMEOUT_MS, max_records=FETCH_MAX_RECORDS
            )
        kept: list[PublishedRecord] = []
        for partition, records in fetched.items():
            if (span := left.get(partition)) is not None:
                kept += [self._published(r) for r in records if r.offset < span.stop]
        for record in kept:
            if record.timestamp_ms < 0:
                raise BrokerError(_no_timestamp(record.topic, record.partition, record.offset))
        return kept

    async def _done(self, left: Mapping[TopicPartition, _Range]) -> list[TopicPartition]:
        with translated("reading failed", bootstrap=self._bootstrap):
            positions = {p: await self._consumer.position(p) for p in left}
        return [p for p, at in positions.items() if at >= left[p].stop]

    def _published(self, record: ConsumerRecord[bytes, bytes]) -> PublishedRecord:
        return PublishedRecord(
            kind=self._kinds[record.topic],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            key=record.key,
            value=record.value,
        )


def _answer(found: OffsetAndTimestamp | None, bounds: _Range) -> int:
    offset = None if found is None or found.offset < 0 else found.offset
    return time_index.first_at_or_after(offset, begin=bounds.start, end=bounds.stop)


def _stamped(record: ConsumerRecord[bytes, bytes]) -> time_index.Stamped:
    if record.timestamp < 0:
        raise BrokerError(_no_timestamp(record.topic, record.partition, record.offset))
    return time_index.Stamped(record.offset, record.timestamp)


def _no_timestamp(topic: str, partition: int, offset: int) -> str:
    return (
        f"the record at {topic}/{partition}/{offset} has no timestamp: the broker cannot "
        "place it in time, so no span of time can be read from it"
    )
