"""The daemon's consumers: events (offsets kept by the caller) and control (commands, monitors)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from controller.adapters.kafka.admin import partition_for
from controller.adapters.kafka.topic_ids import TopicIdentity
from controller.core.machine import LogIdentity
from controller.kit.kafka_client import (
    BROKER_FAILURES,
    METADATA_MAX_AGE_MS,
    ClientLifecycle,
    translated,
)
from controller.ports import Record
from controller.settings import KafkaSettings

log = structlog.get_logger("controller.kafka")
_ANSWER_TIMEOUT_S = 5.0
"""How long a call to the broker that a loop makes between its fetches (log ends, where the
log starts, a commit) may hold it: aiokafka retries some of them for as long as the group
coordinator or a leader is unavailable, while the partitions could still be read."""
_NO_WAIT = 0.0
"""How long asking the consumer's position may wait: it answers at once when it knows it,
and otherwise waits for the broker (a reset pending), which ingest never does between fetches."""


class PartitionListener(Protocol):
    """Told when the group gives or takes partitions of the events topic."""

    def partitions_assigned(self, partitions: list[int]) -> None: ...
    def partitions_revoked(self, partitions: list[int]) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, target: PartitionListener) -> None:
        self._target = target

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._target.partitions_revoked(sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._target.partitions_assigned(sorted(tp.partition for tp in assigned))


class _AssignmentListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, changed: Callable[[], None]) -> None:
        self._changed = changed

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing to hand over: a flag's state lives in Redis."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._changed()


class EventConsumer(ClientLifecycle):
    """A group consumer of one topic whose offsets the caller stores elsewhere.

    Kafka commits are made only so that consumer lag can be monitored; the
    position to resume from is the one the caller passes to :meth:`seek`.
    Records are read committed: an aborted transaction's are never handed out, and
    :meth:`read_to` says where each fetch left a partition, past the transaction
    markers and aborted records that follow its last record.
    ``group_id`` replaces ``kafka.group_id``: another source's topic is read in
    a group of its own, so its members joining never rebalance the events topic.
    """

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        topic: str,
        listener: PartitionListener,
        start_from: str,
        group_id: str | None = None,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        """``fetch_min_bytes`` and ``fetch_max_wait_ms`` are the broker's hold of a fetch
        (aiokafka's defaults: answered as soon as one record is there)."""
        self._topic = topic
        self._listener = _Listener(listener)
        self._start_from = start_from
        self._bootstrap = kafka.bootstrap_servers
        self._identity = TopicIdentity(topic, kafka, timeout_s=_ANSWER_TIMEOUT_S)
        self._client = self._consumer = AIOKafkaConsumer(
            **kafka.client_options(),
            group_id=group_id or kafka.group_id,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            enable_auto_commit=False,
            auto_offset_reset=start_from,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            isolation_level="read_committed",
        )
        self._read_to: dict[int, int] = {}

    async def _on_started(self) -> None:
        self._consumer.subscribe([self._topic], listener=self._listener)

    async def fetch(self, *, timeout_ms: int, max_records: int) -> dict[int, list[Record]]:
        """The next records by partition; empty when none arrived within the timeout."""
        with translated():
            batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        # Before anything else can run: a reset after this fetch must not pass for it.
        await self._note_positions()
        return {tp.partition: records for tp, records in batch.items()}

    async def _note_positions(self) -> None:
        """Note each assigned partition's position as the fetch just left it."""
        self._read_to.clear()
        for tp in self._consumer.assignment():
            try:
                async with asyncio.timeout(_NO_WAIT):
                    self._read_to[tp.partition] = int(await self._consumer.position(tp))
            except (TimeoutError, KafkaError):  # a reset pending, or no longer assigned
                continue

    def read_to(self, partition: int) -> int | None:
        """Where the last fetch left ``partition`` (the consumer's position, which steps
        over transaction markers and aborted records); None after a seek, or unknown."""
        return self._read_to.get(partition)

    def _assigned(self, partitions: list[int]) -> list[TopicPartition]:
        """Those of ``partitions`` the group still assigns here. A rebalance may take one
        between a claim and its seek, pause or resume (the broker lost the topic, say);
        aiokafka refuses those calls for it, and the revocation already tells ingest."""
        assigned = self._consumer.assignment()
        return [tp for p in partitions if (tp := TopicPartition(self._topic, p)) in assigned]

    async def seek(self, partition: int, offset: int | None) -> None:
        """Read ``partition`` from ``offset``; None means from the configured start. Nothing
        for a partition no longer assigned here."""
        self._read_to.pop(partition, None)
        if not self._assigned([partition]):
            return
        tp = TopicPartition(self._topic, partition)
        if offset is not None:
            self._consumer.seek(tp, offset)
        elif self._start_from == "earliest":
            await self._consumer.seek_to_beginning(tp)
        else:
            await self._consumer.seek_to_end(tp)

    def pause(self, partitions: list[int]) -> None:
        self._consumer.pause(*self._assigned(partitions))

    def resume(self, partitions: list[int]) -> None:
        self._consumer.resume(*self._assigned(partitions))

    def highwater(self, partition: int) -> int | None:
        """The end offset of ``partition`` as of the last fetch, if known."""
        end = self._consumer.highwater(TopicPartition(self._topic, partition))
        return None if end is None else int(end)

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        """The end offsets of ``partitions`` asked of the broker (empty if it cannot say).

        ``highwater`` only moves while a partition is fetched; a paused one needs this.
        """
        tps = [TopicPartition(self._topic, p) for p in partitions]
        try:
            ends = await asyncio.wait_for(self._consumer.end_offsets(tps), _ANSWER_TIMEOUT_S)
        except BROKER_FAILURES as exc:  # TimeoutError is an OSError
            log.debug("kafka_end_offsets_skipped", error=repr(exc))
            return {}
        return {tp.partition: int(end) for tp, end in ends.items()}

    async def log_range(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """The earliest and log end offsets of ``partitions`` (empty if the broker cannot say)."""
        tps = [TopicPartition(self._topic, p) for p in partitions]
        try:
            async with asyncio.timeout(_ANSWER_TIMEOUT_S):
                firsts = await self._consumer.beginning_offsets(tps)
                ends = await self._consumer.end_offsets(tps)
        except BROKER_FAILURES as exc:
            log.debug("kafka_log_range_skipped", error=repr(exc))
            return {}
        return {tp.partition: (int(firsts[tp]), int(ends[tp])) for tp in tps}

    def partition_count(self) -> int | None:
        """How many partitions the topic has, as the consumer's last metadata said."""
        partitions = self._consumer.partitions_for_topic(self._topic)
        return len(partitions) if partitions else None

    async def identity(self) -> LogIdentity | None:
        """The topic's id and partition count, asked of a broker now (:mod:`.topic_ids`)."""
        return await self._identity.ask()

    async def stop(self) -> None:
        await super().stop()
        await self._identity.close()

    async def commit(self, offsets: dict[int, int]) -> None:
        """Record progress in Kafka for lag monitoring; failures are only logged. Bounded:
        aiokafka retries a commit until the group coordinator answers, and fetching waits
        for this call."""
        if not offsets:
            return
        try:
            async with asyncio.timeout(_ANSWER_TIMEOUT_S):
                await self._consumer.commit(
                    {TopicPartition(self._topic, p): o for p, o in offsets.items()}
                )
        except BROKER_FAILURES as exc:
            log.debug("kafka_commit_skipped", error=repr(exc))


class ControlConsumer(ClientLifecycle):
    """Group consumer of the commands and monitors topics (committed offsets).

    The partitions of the commands topic it is assigned decide which flags this
    instance owns: their state machines and gates run here (see
    docs/architecture.md, *Scaling and failover*).
    """

    def __init__(
        self,
        *,
        kafka: KafkaSettings,
        commands: str,
        monitors: str,
        on_assignment: Callable[[list[int]], None] | None = None,
    ) -> None:
        self._commands = commands
        self._topics = [commands, monitors]
        self._on_assignment = on_assignment
        self._bootstrap = kafka.bootstrap_servers
        self._client = self._consumer = AIOKafkaConsumer(
            **kafka.client_options(),
            group_id=f"{kafka.group_id}.control",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )

    async def _on_started(self) -> None:
        self._consumer.subscribe(self._topics, listener=_AssignmentListener(self._assigned))

    def _assigned(self) -> None:
        if self._on_assignment is not None:
            self._on_assignment(self.owned_partitions())

    def owned_partitions(self) -> list[int]:
        """The commands partitions assigned to this instance: whose flags it gates."""
        return sorted(
            tp.partition for tp in self._consumer.assignment() if tp.topic == self._commands
        )

    async def fetch(self, *, timeout_ms: int) -> list[Record]:
        """The next records of both topics, in order per partition."""
        with translated():
            batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        return [r for records in batch.values() for r in records]

    async def commit(self) -> None:
        """Commit every position consumed so far; failures are only logged. Bounded, as the
        events consumer's is, so a group coordinator that does not answer holds no kill
        behind it: a commit skipped is made good by the next one, and the records a
        restart reads again meanwhile are deduplicated (commands by id)."""
        try:
            async with asyncio.timeout(_ANSWER_TIMEOUT_S):
                await self._consumer.commit()
        except BROKER_FAILURES as exc:
            log.debug("kafka_commit_skipped", error=repr(exc))

    def owns(self, flag: str) -> bool:
        """Whether this instance is assigned the commands partition of ``flag``."""
        partitions = self._consumer.partitions_for_topic(self._commands)
        if not partitions:
            return False
        owned = {tp.partition for tp in self._consumer.assignment() if tp.topic == self._commands}
        return partition_for(flag, len(partitions)) in owned
