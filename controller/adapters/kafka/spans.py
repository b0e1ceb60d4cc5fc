"""A span of time read back from topics: what ``rolloutctl audit export`` reads.

:class:`SpanReader` finds, in every partition of its topics, the first offset
written at or after ``since`` and the first at or after ``until`` (the broker's
time index, ``offsets_for_times``), and reads the records between them, no group
and no offsets left on the broker. A partition with nothing written since
``since`` is not read at all. Records whose own timestamp lies outside the
span (a producer's clock may run backwards) are left out, so what is read is
exactly the records stamped ``since <= t < until`` from where the index
placed the span.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from controller.core.common import BrokerError
from controller.core.reading import AuditType, PublishedRecord
from controller.kit.kafka_client import ClientLifecycle, topics_partitions, translated
from controller.settings import KafkaSettings

FETCH_MAX_RECORDS = 5_000
FETCH_TIMEOUT_MS = 500
"""The longest a fetch waits for records; a stalled broker is told apart by ``idle_s``."""


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
        ends = await self._consumer.end_offsets(partitions)
        starts = await self._consumer.offsets_for_times(dict.fromkeys(partitions, self._since_ms))
        stops = await self._consumer.offsets_for_times(dict.fromkeys(partitions, self._until_ms))
        ranges = {}
        for partition in partitions:
            start, stop = starts.get(partition), stops.get(partition)
            first = ends[partition] if start is None else start.offset
            last = ends[partition] if stop is None else stop.offset
            if first < last:
                ranges[partition] = _Range(first, last)
        return ranges

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
