"""The app client's producer asks for idempotence once and falls back where the broker refuses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer

from controller.core.common.errors import BrokerError
from controller.sdk.transport import EventProducer, Outcome
from controller.settings import KafkaSettings

pytestmark = pytest.mark.integration


async def test_a_broker_without_idempotence_gets_a_plain_producer_and_a_warning(
    kafka_bootstrap: str,
    topic_factory: Callable[..., Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given the embedded broker, which grants no producer ids
    topic = await topic_factory("idempotence", partitions=1)
    producer = EventProducer(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), topic=topic, request_timeout_ms=5000
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
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert [r.value for records in batch.values() for r in records] == [b"v1", b"v2"]


async def test_an_unreachable_broker_is_not_mistaken_for_one_without_idempotence() -> None:
    producer = EventProducer(
        KafkaSettings(bootstrap_servers="127.0.0.1:1"), topic="t", request_timeout_ms=1000
    )
    with pytest.raises(BrokerError) as raised:
        await producer.start()
    assert raised.value.retriable
    assert producer.idempotent is True
