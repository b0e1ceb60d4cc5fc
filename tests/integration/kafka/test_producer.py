"""The daemon's idempotent producer on Apache Kafka: how it sends, and what it does when refused.

It sends a call's records grouped by partition, many of a partition as batches it
builds and a few through aiokafka's ``send``: every record lands on the partition
``send`` puts its key on, with its headers, in order within its partition, and once. A record too
large for the producer is refused before any record of its call is sent.

A batch the broker refuses leaves a gap in an idempotent producer's sequence, and
Kafka refuses every later batch of that partition as out of order. The dead-letter
publisher meets this whenever the DLQ topic's limit is below
``kafka.max_message_bytes``: it sends the letter again without its value, which must go.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.kafka import DeadLetterPublisher, OutRecord, Producer
from controller.core.common import MessageTooLarge
from controller.ports import DeadLetter
from controller.settings import KafkaSettings
from tests.support.backing.reading import read_to_end

pytestmark = pytest.mark.integration

PARTITIONS = 6


@dataclass(slots=True)
class Rejected:
    """A consumed record the daemon rejected."""

    value: bytes | None
    topic: str = "rollout.events"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"unit-1"
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)


async def _small_topic(bootstrap: str) -> str:
    """A topic of one partition whose records may not exceed 2 KiB."""
    topic = f"t-dlq-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2048"})]
        )
    finally:
        await admin.close()
    return topic


async def test_a_letter_too_large_for_the_dlq_goes_without_its_value_and_the_next_goes_too(
    apache_kafka_bootstrap: str,
) -> None:
    # Given the daemon's producer and a DLQ whose limit is far below the producer's
    topic = await _small_topic(apache_kafka_bootstrap)
    kafka = KafkaSettings(bootstrap_servers=apache_kafka_bootstrap)
    async with Producer(kafka=kafka, request_timeout_ms=10_000) as producer:
        assert producer.idempotent
        letters = DeadLetterPublisher(producer=producer, topic=topic)
        # When a letter the broker refuses as too large comes between two it takes
        for value in (b"first", b"x" * 8192, b"last"):
            await letters.publish([DeadLetter(Rejected(value), "malformed_json", "test")])
    # Then all three are on the topic, the large one without its value
    records = await read_to_end(apache_kafka_bootstrap, topic, partitions=1)
    assert [r.value for r in records] == [b"first", b"", b"last"]
    assert (b"rc.original.bytes", b"8192") in [(k.encode(), v) for k, v in records[1].headers]


async def _topics(bootstrap: str, count: int) -> list[str]:
    names = [f"t-batches-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()
    return names


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(3000, id="batches built: many of aiokafka's 16 KiB a partition"),
        pytest.param(60, id="few a partition: sent one by one"),
    ],
)
async def test_records_land_where_aiokafka_puts_their_keys_in_order_with_their_headers(
    apache_kafka_bootstrap: str, count: int
) -> None:
    ours, theirs = await _topics(apache_kafka_bootstrap, 2)
    # Given records on 200 keys (and a few without a key), 600 bytes each
    records = [
        OutRecord(
            ours,
            None if n % 500 == 0 else f"unit-{n % 200}".encode(),
            f"{n:06d}".encode() + b"." * 594,
            [("n", str(n).encode())],
        )
        for n in range(count)
    ]
    # When the daemon's producer sends them in one call, and aiokafka sends the same
    # keys one by one to a topic of as many partitions
    kafka = KafkaSettings(bootstrap_servers=apache_kafka_bootstrap)
    async with Producer(kafka=kafka, request_timeout_ms=20_000) as producer:
        await producer.send_all(records)
    plain = AIOKafkaProducer(bootstrap_servers=apache_kafka_bootstrap)
    await plain.start()
    try:
        keyed = [r for r in records if r.key is not None]
        sent = [await plain.send(theirs, key=r.key, value=r.value) for r in keyed]
        expected = {r.key: (await each).partition for r, each in zip(keyed, sent, strict=True)}
    finally:
        await plain.stop()
    # Then each record was written once, its key on aiokafka's partition, in order
    got = await read_to_end(apache_kafka_bootstrap, ours, partitions=PARTITIONS)
    assert sorted(int(r.value[:6]) for r in got) == list(range(count))
    by_partition: dict[int, list[int]] = defaultdict(list)
    for r in got:
        n = int(r.value[:6])
        by_partition[r.partition].append(n)
        assert r.headers == (("n", str(n).encode()),), r.headers
        if r.key is not None:
            assert expected[r.key] == r.partition, (r.key, r.partition)
    for numbers in by_partition.values():
        assert numbers == sorted(numbers)
    assert len(by_partition) == PARTITIONS or count < 1000


async def test_a_record_too_large_refuses_its_call_before_any_record_is_sent(
    apache_kafka_bootstrap: str,
) -> None:
    (topic,) = await _topics(apache_kafka_bootstrap, 1)
    kafka = KafkaSettings(bootstrap_servers=apache_kafka_bootstrap, max_message_bytes=16 * 1024)
    async with Producer(kafka=kafka, request_timeout_ms=20_000) as producer:
        # Given a call whose second record is larger than the producer may send
        call = [OutRecord(topic, b"k", b"small"), OutRecord(topic, b"k", b"x" * 20_000)]
        # When it is sent, then it is refused as too large
        with pytest.raises(MessageTooLarge):
            await producer.send_all(call)
        # and the next call goes, alone on the topic
        await producer.send_all([OutRecord(topic, b"k", b"next")])
    got = await read_to_end(apache_kafka_bootstrap, topic, partitions=PARTITIONS)
    assert [r.value for r in got] == [b"next"]
