"""Producing: the daemon's producer, its publishers, and one-off sends for ``rolloutctl``."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
from collections.abc import Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from controller.core.common import BrokerError, MessageTooLarge
from controller.kit.kafka_client import translated
from controller.kit.kafka_producer import KafkaProducer
from controller.kit.lifecycle import Lifecycle
from controller.ports import DeadLetter
from controller.settings import KafkaSettings


class OutRecord(NamedTuple):
    """One message to produce (a tuple: one is made per event the intake sends, and a
    frozen dataclass costs several times as much to make)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


DEFAULT_REQUEST_TIMEOUT_MS = 40_000
"""aiokafka's own default, which the daemon's producer keeps unless told otherwise."""
BATCH_BYTES = 256 * 1024
"""The largest batch of records the daemon's producer sends a partition at once (at most
``kafka.max_message_bytes``). aiokafka keeps one request in flight per partition, so a
partition takes one batch each round trip to the broker: at its default of 16 KiB, the
HTTP intake's batches of 500 events went out some fifty records a round trip
(docs/benchmarks.md, *HTTP event intake*). A batch grows only as records come."""


class Producer(Lifecycle):
    """The daemon's producer: sends batches and waits for the broker's acknowledgement.

    Idempotent and ``acks=all`` (:class:`~controller.kit.kafka_producer.KafkaProducer`),
    so a retried request never writes a record twice. aiokafka would retry an
    idempotent batch for as long as the broker is away; :meth:`send_all` instead
    gives up after ``request_timeout_ms``, as a plain producer did, and abandons
    the producer so that what it gave up is never sent later (the HTTP intake
    answers 503 for it and the app sends it again; the outbox keeps it). A batch
    the broker refused abandons it too. The next send starts a fresh producer.
    """

    def __init__(self, *, kafka: KafkaSettings, request_timeout_ms: int | None = None) -> None:
        """``request_timeout_ms`` also bounds how long a batch may wait unacknowledged."""
        self.max_message_bytes = kafka.max_message_bytes
        timeout_ms = request_timeout_ms or DEFAULT_REQUEST_TIMEOUT_MS
        self._delivery_s = timeout_ms / 1000
        self._bootstrap = kafka.bootstrap_servers
        self._options = kafka.client_options() | {
            "linger_ms": 2,
            "max_request_size": kafka.max_message_bytes,
            "max_batch_size": min(BATCH_BYTES, kafka.max_message_bytes),
            "request_timeout_ms": timeout_ms,
        }
        self._current = self._fresh(idempotent=True)
        self._starting = asyncio.Lock()
        self._abandoning: set[asyncio.Task[None]] = set()

    @property
    def idempotent(self) -> bool:
        """Whether the broker granted a producer id (before the first start: whether asked)."""
        return self._current.idempotent

    def _fresh(self, *, idempotent: bool) -> KafkaProducer:
        return KafkaProducer(self._options, bootstrap=self._bootstrap, idempotent=idempotent)

    async def start(self) -> None:
        """Connect; :class:`BrokerError` if the broker cannot be reached (nothing left open)."""
        async with self._starting:
            await self._current.start()

    async def stop(self) -> None:
        await self._current.stop()
        await asyncio.gather(*self._abandoning)

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        """Send ``records`` in order; return once the broker has them all."""
        await self.start()  # a no-op unless the last producer was abandoned
        current = self._current
        try:
            with translated():
                async with asyncio.timeout(self._delivery_s):
                    await _sent(current.client, records, limit=self.max_message_bytes)
        except BrokerError:
            # Given up on, or refused: a batch that failed leaves a gap in an idempotent
            # producer's sequence, and the broker would refuse that partition's next
            # batch as out of order. A fresh producer id starts a new sequence.
            self._abandon(current)
            raise

    def renew(self) -> None:
        """Send through a fresh producer from now on. A producer that wrote to a topic since
        deleted and made again may be answered NOT_LEADER_OR_FOLLOWER for it until each
        request times out; a fresh one asks the broker for the new topic at once."""
        self._abandon(self._current)

    def _abandon(self, given_up: KafkaProducer) -> None:
        """Close ``given_up`` in the background and send through a fresh producer."""
        if given_up is not self._current:
            return  # a concurrent send gave up on it first
        self._current = self._fresh(idempotent=given_up.idempotent)
        task = asyncio.create_task(given_up.stop(), name="abandon-producer")
        self._abandoning.add(task)
        task.add_done_callback(self._abandoning.discard)


SEND_SLICE = 128
"""Records appended between two turns of the event loop: thousands at once would hold the
loop for as long as they take to append, and a kill's decision with it."""


BUILT_FROM = 32
"""Records a call holds for one partition from which they go as batches built here. Fewer
go one by one through aiokafka's ``send``, which adds them to the partition's open batch:
a built batch waits for the partition's previous one to be sent, so small concurrent
calls would queue behind each other where ``send`` lets them share a batch."""


async def _sent(producer: AIOKafkaProducer, records: Sequence[OutRecord], *, limit: int) -> None:
    """Send ``records``, grouped by partition, and wait for the broker to have them all.

    aiokafka's ``send`` makes a future and a metadata object per record (31 µs of CPU a
    record against 11 through batches, for ``bench/http_intake.py``'s events), so a
    partition's :data:`BUILT_FROM` records or more are appended to batches built here.
    The partition is the one ``send`` would choose (the Java client's murmur2 of the
    key; a record without a key, a random one). A record larger than ``limit`` (the
    producer's ``max_request_size``) is refused before anything is sent. Records of one
    partition keep their order.
    """
    headers = [list(r.headers) for r in records]  # the builder takes lists only
    for r, listed in zip(records, headers, strict=True):
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(r.key, r.value, listed)
        if size > limit:
            raise MessageSizeTooLargeError(
                f"a record of {size} bytes is larger than max_request_size ({limit})"
            )
    futures: list[asyncio.Future[Any]] = []
    handed = 0
    for (topic, partition), members in (await _by_partition(producer, records)).items():
        built = producer.create_batch() if len(members) >= BUILT_FROM else None
        for i in members:
            r = records[i]
            if built is None:
                futures.append(
                    await producer.send(
                        topic, r.value, r.key, partition=partition, headers=headers[i]
                    )
                )
            elif built.append(key=r.key, value=r.value, timestamp=None, headers=headers[i]) is None:
                futures.append(await producer.send_batch(built, topic, partition=partition))
                built = producer.create_batch()
                built.append(key=r.key, value=r.value, timestamp=None, headers=headers[i])
            handed += 1
            if handed % SEND_SLICE == 0:
                await asyncio.sleep(0)
        if built is not None:
            futures.append(await producer.send_batch(built, topic, partition=partition))
    await asyncio.gather(*futures)


async def _by_partition(
    producer: AIOKafkaProducer, records: Sequence[OutRecord]
) -> dict[tuple[str, int], list[int]]:
    """The records' indices by the topic and partition aiokafka's ``send`` would choose."""
    partitions: dict[str, list[int]] = {}
    groups: dict[tuple[str, int], list[int]] = {}
    for i, r in enumerate(records):
        known = partitions.get(r.topic)
        if known is None:
            known = partitions[r.topic] = sorted(await producer.partitions_for(r.topic))
        partition = (
            random.choice(known)  # noqa: S311  # spread, as aiokafka does: not a secret
            if r.key is None
            else known[_key_hash(r.key) % len(known)]
        )
        groups.setdefault((r.topic, partition), []).append(i)
    return groups


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    """The Java client's (and aiokafka's default partitioner's) hash of a key: murmur2,
    made positive. In Python it costs some microseconds; a unit sends many events."""
    return int(murmur2(key)) & 0x7FFFFFFF


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
        if kept is None and key is None:  # a record needs one of them: an empty value
            kept = b""
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


class Publisher:
    """Publishes the controller's outputs: (topic, key, value) messages, acknowledged."""

    def __init__(self, *, producer: Producer) -> None:
        self._producer = producer

    async def publish(self, messages: Sequence[tuple[str, str, bytes]]) -> None:
        """Send the messages in order; return once all are acknowledged."""
        await self._producer.send_all([OutRecord(t, k.encode(), v) for t, k, v in messages])

    async def publish_values(self, messages: Sequence[tuple[str, str, bytes | None]]) -> None:
        """As :meth:`publish`, where a None value is a tombstone (compacted topics)."""
        await self._producer.send_all([OutRecord(t, k.encode(), v) for t, k, v in messages])

    def renew(self) -> None:
        """Publish through a fresh producer from now on (:meth:`Producer.renew`): after a
        topic was made again."""
        self._producer.renew()


async def send_and_wait(
    kafka: KafkaSettings, *, topic: str, key: bytes, value: bytes, client_id: str, timeout_s: float
) -> tuple[int, int]:
    """Produce one message with acks=all; the partition and offset it was written at.

    Raises :class:`~controller.core.common.errors.BrokerError` when the broker cannot
    be reached within ``timeout_s`` or refuses the message.
    """
    records = [(key, value)]
    return await send_many(
        kafka, topic=topic, records=records, client_id=client_id, timeout_s=timeout_s
    )


async def send_many(
    kafka: KafkaSettings,
    *,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    client_id: str,
    timeout_s: float,
) -> tuple[int, int]:
    """Produce ``records`` (key, value) in order through one producer, acks=all, each
    acknowledged before the next is sent; the partition and offset of the last.
    :class:`~controller.core.common.errors.BrokerError` as :func:`send_and_wait`."""
    written = (-1, -1)
    options = kafka.client_options() | {
        "client_id": client_id,
        "request_timeout_ms": int(timeout_s * 1000),
    }
    # A copy is harmless here (a command is decided once by its id; a segment record is
    # keyed state), so a broker without idempotence is not worth a warning on every call.
    producer = KafkaProducer(
        options, bootstrap=kafka.bootstrap_servers, refusal_level=logging.DEBUG
    )
    try:
        with translated(f"cannot send to {topic}", bootstrap=kafka.bootstrap_servers):
            async with asyncio.timeout(timeout_s):
                await producer.start()
                for key, value in records:
                    meta = await producer.client.send_and_wait(topic, key=key, value=value)
                    written = (int(meta.partition), int(meta.offset))
    finally:
        await producer.stop()
    return written
