"""The daemon's idempotent producer after Apache Kafka refuses a batch.

A refused batch leaves a gap in an idempotent producer's sequence, and Kafka refuses
every later batch of that partition as out of order. The dead-letter publisher meets
this whenever the DLQ topic's limit is below ``kafka.max_message_bytes``: it sends the
letter again without its value, which must go.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.kafka import DeadLetterPublisher, Producer
from controller.ports import DeadLetter
from controller.settings import KafkaSettings
from tests.support.backing.reading import read_to_end

pytestmark = pytest.mark.integration


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
