"""A span of time read back from topics by the broker's time index: what the audit export reads."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Broker:
    bootstrap: str
    indexed: bool
    """Whether it keeps a time index (Apache Kafka does, the embedded broker does not)."""


@pytest.fixture(params=["apache_kafka_bootstrap", "tansu_bootstrap"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Apache Kafka, then the embedded broker."""
    bootstrap = str(request.getfixturevalue(request.param))
    return Broker(bootstrap, indexed=request.param == "apache_kafka_bootstrap")


async def test_the_span_holds_the_records_stamped_in_it_and_no_other(broker: Broker) -> None:
    bootstrap = broker.bootstrap
    # Given a partition whose producer's clock went back once, and one all before the span
    topic = await _topic(bootstrap, partitions=2)
    stamped = [(0, T - 10_000), (0, T + 1_000), (0, T + 2_000), (0, T - 5_000), (0, T + 3_000)]
    stamped += [(0, T + 100_000), (1, T - 20_000), (1, T - 1)]
    await _produce(bootstrap, topic, stamped)
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
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
        # ...the topic that does not exist is named
        assert reader.missing == [missing]
        if broker.indexed:
            # ...and where the broker keeps a time index, the range it gave held 4 (the late
            # one included)
            assert (reader.total, reader.whole) == (4, {})
        else:
            # ...and where its answers contradict the records, both partitions are read whole
            assert reader.total == 8
            assert set(reader.whole) == {f"{topic}/0", f"{topic}/1"}


def _epoch_ms() -> int:
    """Now by the wall clock, as the producer stamps records."""
    return int(time.time() * 1000)


async def test_a_span_up_to_now_holds_every_record_since(broker: Broker) -> None:
    bootstrap = broker.bootstrap
    # Given records stamped by the producer's clock, the last a moment ago
    topic = await _topic(bootstrap, partitions=1)
    now = _epoch_ms()
    await _produce(bootstrap, topic, [(0, now - 3_000), (0, now - 2_000), (0, now - 1_000)])
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    # When the span from 2.5 s ago until a moment from now is read
    reader = SpanReader(
        kafka, {topic: "decision"}, since_ms=now - 2_500, until_ms=now + 1_000, timeout_s=30
    )
    async with reader:
        read = [r async for batch in reader.batches() for r in batch]
    # Then it holds the two records since then, whatever the broker's time index says
    assert [r.offset for r in read] == [1, 2]


async def test_a_span_of_topics_none_of_which_exists_is_refused(
    apache_kafka_bootstrap: str,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=apache_kafka_bootstrap)
    topic = f"t-span-none-{uuid.uuid4().hex[:8]}"
    reader = SpanReader(kafka, {topic: "decision"}, since_ms=T, until_ms=T + 1, timeout_s=30)
    with pytest.raises(BrokerError, match="none of the topics"):
        await reader.start()
