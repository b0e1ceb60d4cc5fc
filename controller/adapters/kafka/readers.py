"""Readers for the operator's tools: ``rolloutctl`` and the demo, not the daemon.

:class:`TopicReader` reads every partition of some topics without a consumer
group, from their beginning or from their end as of its start;
:class:`GroupConsumer` reads one topic in a group and commits each record
once the caller is done with it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, TopicPartition

from controller.core.common import BrokerError
from controller.kit.kafka_client import (
    METADATA_MAX_AGE_MS,
    ClientLifecycle,
    topic_partitions,
    translated,
)
from controller.ports import Record
from controller.settings import KafkaSettings


class TopicReader(ClientLifecycle):
    """Every partition of ``topics``, with no group and no offsets left on the broker.

    With ``from_end``, reading starts at the end offsets resolved during
    :meth:`start`, so a message produced after ``start`` returns cannot slip
    past. Starting raises :class:`BrokerError` when a topic does not exist or
    the broker does not answer within ``timeout_s``.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: list[str],
        *,
        from_end: bool,
        client_id: str | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self._topics = topics
        self._from_end = from_end
        self._context = f"cannot read {', '.join(topics)}"
        self._bootstrap = kafka.bootstrap_servers
        self._start_timeout_s = timeout_s
        options = kafka.client_options() | ({"client_id": client_id} if client_id else {})
        self._client = self._consumer = AIOKafkaConsumer(
            **options, enable_auto_commit=False, auto_offset_reset="earliest"
        )

    async def _on_started(self) -> None:
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            found = await topic_partitions(self._consumer, topic)
            if not found:
                raise BrokerError(f"topic {topic} does not exist: is the controller running?")
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        self._consumer.assign(partitions)
        # Resolved offsets, not seek_to_end(): that one is lazy and could land
        # after a message produced in the meantime.
        ends = await self._consumer.end_offsets(partitions) if self._from_end else {}
        for partition in partitions:
            self._consumer.seek(partition, ends.get(partition, 0))

    async def stop(self) -> None:
        """Stop reading, whatever became of the broker.

        With the broker gone, aiokafka's ``stop()`` can raise the cancellation
        of its own fetch task; a tool that has read what it needed (a command
        already sent, waiting for its decision) must not fail on it. The
        caller's own cancellation still propagates.
        """
        try:
            await super().stop()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise

    async def until_end(
        self,
        *,
        key: bytes | Collection[bytes] | None,
        max_records: int,
        max_kept: int,
        timeout_s: float,
    ) -> tuple[list[bytes], bool]:
        """The values (of records keyed ``key``, or one of the keys, or all) up to the topics'
        end as of this call.

        Also says whether the end was reached: reading stops early after
        ``max_records`` records or ``timeout_s``, so a topic of any length costs a
        bounded time, and only the last ``max_kept`` of the records asked for are kept.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with translated("reading failed"):
            partitions = list(self._consumer.assignment())
            ends = await self._consumer.end_offsets(partitions)
        wanted = None if key is None else {key} if isinstance(key, bytes) else set(key)
        kept: collections.deque[bytes] = collections.deque(maxlen=max_kept)
        read = 0
        while read < max_records:
            with translated("reading failed"):
                positions = [await self._consumer.position(p) for p in partitions]
            if all(at >= ends[p] for at, p in zip(positions, partitions, strict=True)):
                return list(kept), True
            if (left := deadline - loop.time()) <= 0:
                break
            with translated("reading failed"):
                batch = await self._consumer.getmany(
                    timeout_ms=max(1, int(min(left, 0.5) * 1000)), max_records=10_000
                )
            records = [r for rs in batch.values() for r in rs]
            read += len(records)
            kept.extend(r.value or b"" for r in records if wanted is None or r.key in wanted)
        return list(kept), False

    async def values(self, timeout_s: float) -> list[bytes | None]:
        """The values of the records that arrive within ``timeout_s``, in order per partition."""
        with translated("reading failed"):
            batch = await self._consumer.getmany(timeout_ms=max(1, int(timeout_s * 1000)))
        return [record.value for records in batch.values() for record in records]


class GroupConsumer(ClientLifecycle):
    """One topic read in consumer group ``group``, committed record by record (manually)."""

    def __init__(
        self, kafka: KafkaSettings, *, topic: str, group: str, start_from: str, client_id: str
    ) -> None:
        self._topic = topic
        self._context = f"cannot consume {topic}"
        self._bootstrap = kafka.bootstrap_servers
        self._client = self._consumer = AIOKafkaConsumer(
            topic,
            **kafka.client_options() | {"client_id": client_id},
            group_id=group,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            enable_auto_commit=False,
            auto_offset_reset=start_from,
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )

    async def fetch(self, *, timeout_ms: int, max_records: int) -> list[Record]:
        """The next records, in order per partition; empty when none came within the timeout."""
        with translated("fetching failed"):
            batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [record for records in batch.values() for record in records]

    async def commit_through(self, record: Record) -> None:
        """Commit ``record``'s partition up to and including ``record``."""
        with translated("commit failed"):
            await self._consumer.commit(
                {TopicPartition(record.topic, record.partition): record.offset + 1}
            )
