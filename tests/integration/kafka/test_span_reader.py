"""A span of time read back from topics by the broker's time index: what the audit export reads."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.kafka import SpanReader
from controller.core.common import BrokerError
from controller.settings import KafkaSettings

pytestmark = pytest.mark.integration

T = 1_767_225_600_000
"""The span's start, 2026-01-01T00:00:00Z, in epoch milliseconds."""


async def _topic(bootstrap: str, partitions: int) -> str:
    name = f"t-span-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


async def _produce(bootstrap: str, topic: str, stamped: list[tuple[int, int]]) -> None:
    """Records ``(partition, timestamp)``, in order, valued by their timestamp."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, ts in stamped:
            value = str(ts - T).encode()
            await producer.send_and_wait(topic, value, partition=partition, timestamp_ms=ts)
    finally:
        await producer.stop()


async def test_the_span_holds_the_records_stamped_in_it_and_no_other(
    apache_kafka_bootstrap: str,
) -> None:
    # Given a partition whose producer's clock went back once, and one all before the span
    topic = await _topic(apache_kafka_bootstrap, partitions=2)
    stamped = [(0, T - 10_000), (0, T + 1_000), (0, T + 2_000), (0, T - 5_000), (0, T + 3_000)]
    stamped += [(0, T + 100_000), (1, T - 20_000), (1, T - 1)]
    await _produce(apache_kafka_bootstrap, topic, stamped)
    kafka = KafkaSettings(bootstrap_servers=apache_kafka_bootstrap)
    missing = f"t-span-missing-{uuid.uuid4().hex[:8]}"
    # When the span [T, T + 10 s) is read
    reader = SpanReader(
        kafka, {topic: "decision", missing: "alert"}, since_ms=T, until_ms=T + 10_000, timeout_s=30
    )
    async with reader:
        read = [r async for batch in reader.batches() for r in batch]
        # Then only the records stamped within it are read, in order, from their offsets
        assert [(r.partition, r.offset, int(r.value or b"")) for r in read] == [
            (0, 1, 1_000),
            (0, 2, 2_000),
            (0, 4, 3_000),
        ]
        assert {r.kind for r in read} == {"decision"}
        # ...the range the time index gave held 4 (the late one included), and the topic
        # that does not exist is named
        assert reader.total == 4
        assert reader.missing == [missing]


async def test_a_span_of_topics_none_of_which_exists_is_refused(
    apache_kafka_bootstrap: str,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=apache_kafka_bootstrap)
    topic = f"t-span-none-{uuid.uuid4().hex[:8]}"
    reader = SpanReader(kafka, {topic: "decision"}, since_ms=T, until_ms=T + 1, timeout_s=30)
    with pytest.raises(BrokerError, match="none of the topics"):
        await reader.start()
