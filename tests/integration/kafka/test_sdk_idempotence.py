"""The app client's producer asks for idempotence once: granted by Apache Kafka from its
first moments, refused by the embedded tansu, which gets a plain producer and one line;
after an event Apache Kafka refuses, the next goes through a fresh producer id."""

from __future__ import annotations

import logging
import re
import uuid
from collections import Counter
from functools import partial

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.core.common.errors import BrokerError
from controller.core.wire.messages import Arm
from controller.sdk import EventEmitter
from controller.sdk.transport import EventProducer, Outcome
from controller.settings import KafkaSettings
from tests.conftest import KafkaBrokerFactory
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

FLAG = "checkout"
BROKER_ERROR = re.compile(r"^\[[^]]*\] (ERROR|FATAL) ", re.MULTILINE)
"""A line of the test broker's log at ERROR or worse (its log4j pattern: ``[date] LEVEL``)."""


async def _fresh_topic(bootstrap: str, config: dict[str, str] | None = None) -> str:
    """A new topic of one partition, once the broker names its leader.

    A partition created a moment ago may still answer a produce request
    NOT_LEADER_OR_FOLLOWER, which aiokafka retries with a warning of its own: that
    is the topic's start, not the producer's, and is not what these tests watch.
    """
    topic = f"t-idempotence-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config or {})])
    finally:
        await admin.close()
    await eventually(partial(_led, bootstrap, topic), timeout=30, what=f"{topic}'s leader")
    return topic


async def _led(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = described.get("partitions") or []
    return bool(partitions) and all(p.get("leader", -1) >= 0 for p in partitions)


async def test_apache_kafka_grants_the_app_producer_idempotence_from_its_first_moments(
    kafka_broker_factory: KafkaBrokerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an Apache Kafka node that has just come up, and a topic on it
    broker = kafka_broker_factory()
    topic = await _fresh_topic(broker.bootstrap)
    producer = EventProducer(
        KafkaSettings(bootstrap_servers=broker.bootstrap), topic=topic, request_timeout_ms=5000
    )
    # When the app client's producer starts at once (the node may still answer that its
    # producer ids are loading, which aiokafka asks again about without a word)
    with caplog.at_level(logging.INFO):
        await producer.start()
        try:
            sent = await producer.send([(b"k", b"v1"), (b"k", b"v2")])
        finally:
            await producer.stop()
    # Then it is idempotent, nothing warned or failed on either side, and both records went once
    assert producer.idempotent is True
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sent == [Outcome.SENT] * 2
    assert await _values(broker.bootstrap, topic) == [b"v1", b"v2"]
    broker_log = broker.log_path.read_text(encoding="utf-8", errors="replace")
    assert BROKER_ERROR.findall(broker_log) == [], broker_log[-3000:]


async def test_a_broker_without_idempotence_gets_a_plain_producer_and_a_warning(
    tansu_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the embedded broker, which grants no producer ids
    topic = await _fresh_topic(tansu_bootstrap)
    producer = EventProducer(
        KafkaSettings(bootstrap_servers=tansu_bootstrap), topic=topic, request_timeout_ms=5000
    )
    # When the app client's producer starts
    with caplog.at_level(logging.INFO):
        await producer.start()
    try:
        # Then it says idempotence is off and why, in one line, and sends all the same
        assert producer.idempotent is False
        said = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.name for r in said] == ["controller.sdk.client"], caplog.text
        assert "has no idempotent producer" in said[0].getMessage()
        assert "Unexpected error during InitProducerIdRequest" not in caplog.text
        assert await producer.send([(b"k", b"v1"), (b"k", b"v2")]) == [Outcome.SENT] * 2
    finally:
        await producer.stop()
    assert await _values(tansu_bootstrap, topic) == [b"v1", b"v2"]


async def _values(bootstrap: str, topic: str) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    return [r.value for records in batch.values() for r in records]


async def test_an_unreachable_broker_is_not_mistaken_for_one_without_idempotence() -> None:
    producer = EventProducer(
        KafkaSettings(bootstrap_servers="127.0.0.1:1"), topic="t", request_timeout_ms=1000
    )
    with pytest.raises(BrokerError) as raised:
        await producer.start()
    assert raised.value.retriable
    assert producer.idempotent is True


async def test_an_event_the_broker_refuses_costs_no_event_after_it(
    apache_kafka_bootstrap: str,
) -> None:
    # Given a topic whose records may not exceed 1 KiB, on Apache Kafka
    topic = await _fresh_topic(apache_kafka_bootstrap, {"max.message.bytes": "1024"})
    emitter = EventEmitter(
        KafkaSettings(bootstrap_servers=apache_kafka_bootstrap),
        topic=topic,
        batch_size=1,
        request_timeout_ms=5000,
    )
    async with emitter:
        # When an event the broker refuses (a 4 KiB unit id) comes between two it takes
        for unit in ("before", "u" * 4096, "after"):
            assert emitter.exposure(FLAG, unit, Arm.TREATMENT, 1) is not None
            await eventually(lambda: emitter.buffered == 0, timeout=30, what="the event sent")
    # Then only the refused one is lost: the next goes out, through a fresh producer id
    assert (emitter.sent, +emitter.dropped) == (2, Counter(rejected=1))
    units = [
        orjson.loads(value or b"{}")["unit"]
        for value in await _values(apache_kafka_bootstrap, topic)
    ]
    assert units == ["before", "after"]
