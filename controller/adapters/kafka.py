"""The Kafka edge: the event consumer, the dead-letter publisher, topic creation.

aiokafka errors are translated into :class:`BrokerUnavailable` /
:class:`BrokerError` here; nothing above this module imports aiokafka.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner

from controller.core.errors import BrokerError, BrokerUnavailable, MessageTooLarge
from controller.settings import KafkaSettings, TopicSettings

log = structlog.get_logger("controller.kafka")


class Record(Protocol):
    """The parts of a consumed record the controller reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class PartitionListener(Protocol):
    """Told when the group gives or takes partitions of the events topic."""

    def partitions_assigned(self, partitions: list[int]) -> None: ...
    def partitions_revoked(self, partitions: list[int]) -> None: ...


def _translate(exc: BaseException) -> BrokerError:
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError | OSError):
        return BrokerUnavailable(f"broker unreachable: {exc}")
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError):
        return MessageTooLarge(f"message too large for the broker: {exc}")
    return BrokerError(f"broker error: {exc!r}", retriable=getattr(exc, "retriable", False))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, target: PartitionListener) -> None:
        self._target = target

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._target.partitions_revoked(sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._target.partitions_assigned(sorted(tp.partition for tp in assigned))


class _Lifecycle:
    """An aiokafka client behind ``start()``/``stop()`` (both idempotent) and ``async with``."""

    _client: Any
    _started = False

    async def start(self) -> None:
        if self._started:
            return
        try:
            await self._client.start()
        except KafkaError as exc:
            await self._client.stop()
            raise _translate(exc) from exc
        self._on_started()
        self._started = True

    def _on_started(self) -> None:
        """Subscribe, for consumers; nothing for producers."""

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._client.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class EventConsumer(_Lifecycle):
    """A group consumer of one topic whose offsets the caller stores elsewhere.

    Kafka commits are made only so that consumer lag can be monitored; the
    position to resume from is the one the caller passes to :meth:`seek`.
    """

    def __init__(
        self, *, kafka: KafkaSettings, topic: str, listener: PartitionListener, start_from: str
    ) -> None:
        self._topic = topic
        self._listener = _Listener(listener)
        self._start_from = start_from
        self._client = self._consumer = AIOKafkaConsumer(
            **kafka.client_options(),
            group_id=kafka.group_id,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            enable_auto_commit=False,
            auto_offset_reset=start_from,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
        )

    def _on_started(self) -> None:
        self._consumer.subscribe([self._topic], listener=self._listener)

    async def fetch(self, *, timeout_ms: int, max_records: int) -> dict[int, list[Record]]:
        """The next records by partition; empty when none arrived within the timeout."""
        try:
            batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise _translate(exc) from exc
        return {tp.partition: records for tp, records in batch.items()}

    async def seek(self, partition: int, offset: int | None) -> None:
        """Read ``partition`` from ``offset``; None means from the configured start."""
        tp = TopicPartition(self._topic, partition)
        if offset is not None:
            self._consumer.seek(tp, offset)
        elif self._start_from == "earliest":
            await self._consumer.seek_to_beginning(tp)
        else:
            await self._consumer.seek_to_end(tp)

    def pause(self, partitions: list[int]) -> None:
        self._consumer.pause(*(TopicPartition(self._topic, p) for p in partitions))

    def resume(self, partitions: list[int]) -> None:
        self._consumer.resume(*(TopicPartition(self._topic, p) for p in partitions))

    def highwater(self, partition: int) -> int | None:
        """The end offset of ``partition`` as of the last fetch, if known."""
        end = self._consumer.highwater(TopicPartition(self._topic, partition))
        return None if end is None else int(end)

    def assigned(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    async def commit(self, offsets: dict[int, int]) -> None:
        """Record progress in Kafka for lag monitoring; failures are only logged."""
        if not offsets:
            return
        try:
            await self._consumer.commit(
                {TopicPartition(self._topic, p): o for p, o in offsets.items()}
            )
        except KafkaError as exc:
            log.debug("kafka_commit_skipped", error=repr(exc))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record and why it was rejected."""

    record: Record
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One message to produce."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Producer(_Lifecycle):
    """The daemon's one producer: sends batches and waits for the broker's acknowledgement."""

    def __init__(self, *, kafka: KafkaSettings) -> None:
        self.max_message_bytes = kafka.max_message_bytes
        self._client = self._producer = AIOKafkaProducer(
            **kafka.client_options(),
            acks="all",
            linger_ms=2,
            max_request_size=kafka.max_message_bytes,
        )

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        """Send ``records`` in order; return once the broker has them all."""
        try:
            futures = [
                await self._producer.send(r.topic, key=r.key, value=r.value, headers=r.headers)
                for r in records
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise _translate(exc) from exc


class DeadLetterPublisher:
    """Sends rejected input to the DLQ topic: original key and bytes, reason in headers.

    A letter never grows past what the producer may send: the original's
    headers are bounded, and a value (or key) that does not fit is cut, with
    ``rc.truncated`` and the original's size and SHA-256 in headers. If the
    broker still refuses a letter as too large (its limit is lower than
    ``kafka.max_message_bytes``), it is sent again with no value at all.
    """

    def __init__(self, *, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send every letter and wait until the broker has them all."""
        budget = self._producer.max_message_bytes - _LETTER_OVERHEAD
        try:
            await self._producer.send_all([self._record(d, budget) for d in letters])
        except MessageTooLarge:
            await self._producer.send_all([self._record(d, 0) for d in letters])

    def _record(self, letter: DeadLetter, budget: int) -> OutRecord:
        headers = _headers(letter)
        key, value = letter.record.key, letter.record.value or b""
        room = max(0, budget - sum(len(k) + len(v) for k, v in headers))
        if key is not None and len(key) > MAX_LETTER_KEY_BYTES:
            headers.append(("rc.key.truncated", str(len(key)).encode()))
            key = key[:MAX_LETTER_KEY_BYTES]
        room -= len(key or b"")
        if len(value) > room:
            headers += _truncation(value)
            value = value[: max(0, room)]
        kept = None if letter.record.value is None else value
        return OutRecord(self._topic, key, kept, headers)


_LETTER_OVERHEAD = 4096
"""Bytes kept free under the producer's limit for the record's own framing."""
MAX_LETTER_KEY_BYTES = 1024
MAX_COPIED_HEADERS = 32
MAX_COPIED_HEADER_BYTES = 8192


def _truncation(value: bytes) -> list[tuple[str, bytes]]:
    return [
        ("rc.truncated", b"true"),
        ("rc.original.bytes", str(len(value)).encode()),
        ("rc.original.sha256", hashlib.sha256(value).hexdigest().encode()),
    ]


def _headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    record = letter.record
    own = [
        ("rc.reason", letter.reason.encode()),
        ("rc.detail", letter.detail.encode()[:1000]),
        ("rc.source.topic", record.topic.encode()),
        ("rc.source.partition", str(record.partition).encode()),
        ("rc.source.offset", str(record.offset).encode()),
    ]
    return own + _copied_headers(record.headers or ())


def _copied_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The original's headers, bounded in count and bytes (its own ``rc.*`` ones dropped)."""
    theirs = [(name, value or b"") for name, value in headers if not name.startswith("rc.")]
    kept: list[tuple[str, bytes]] = []
    size = 0
    for name, value in theirs[:MAX_COPIED_HEADERS]:
        size += len(name) + len(value)
        if size > MAX_COPIED_HEADER_BYTES:
            break
        kept.append((name, value))
    if len(kept) < len(theirs):
        kept.append(("rc.headers.dropped", str(len(theirs) - len(kept)).encode()))
    return kept


async def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create the controller's topics that do not exist yet; return the created names."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=kafka.events_partitions if name == topics.events else 3,
                replication_factor=kafka.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if name == topics.flag_state else {},
            )
            for name in dict.fromkeys(topics.model_dump().values())
            if name not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
        return [t.name for t in wanted]
    except KafkaError as exc:
        raise _translate(exc) from exc
    finally:
        await admin.close()


def partition_for(key: str, partitions: int) -> int:
    """The partition a producer's default partitioner sends ``key`` to (murmur2)."""
    return int(DefaultPartitioner()(key.encode(), list(range(partitions)), []))


class Publisher:
    """Publishes the controller's outputs: (topic, key, value) messages, acknowledged."""

    def __init__(self, *, producer: Producer) -> None:
        self._producer = producer

    async def publish(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        """Send the messages in order; return once all are acknowledged."""
        await self._producer.send_all([OutRecord(t, k.encode(), v) for t, k, v in messages])


class ControlConsumer(_Lifecycle):
    """Group consumer of the commands and monitors topics (committed offsets).

    The partitions of the commands topic it is assigned decide which flags this
    instance owns: their state machines and gates run here (DESIGN §11).
    """

    def __init__(self, *, kafka: KafkaSettings, commands: str, monitors: str) -> None:
        self._commands = commands
        self._topics = [commands, monitors]
        self._client = self._consumer = AIOKafkaConsumer(
            **kafka.client_options(),
            group_id=f"{kafka.group_id}.control",
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    def _on_started(self) -> None:
        self._consumer.subscribe(self._topics)

    async def fetch(self, *, timeout_ms: int) -> list[Record]:
        """The next records of both topics, in order per partition."""
        try:
            batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        except KafkaError as exc:
            raise _translate(exc) from exc
        return [r for records in batch.values() for r in records]

    async def commit(self) -> None:
        try:
            await self._consumer.commit()
        except KafkaError as exc:
            log.debug("kafka_commit_skipped", error=repr(exc))

    def owns(self, flag: str) -> bool:
        """Whether this instance is assigned the commands partition of ``flag``."""
        partitions = self._consumer.partitions_for_topic(self._commands)
        if not partitions:
            return False
        owned = {tp.partition for tp in self._consumer.assignment() if tp.topic == self._commands}
        return partition_for(flag, len(partitions)) in owned
