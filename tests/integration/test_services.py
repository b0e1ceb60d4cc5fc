"""The shared fixtures provide working services: a broker, Redis, and test-owned servers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.structs import RecordMetadata

from controller.adapters.kafka import ensure_topics
from controller.dev.broker import start_embedded_broker
from controller.dev.processes import ServiceUnavailable
from controller.sdk.transport import TopicFollower
from controller.settings import KafkaSettings, TopicSettings
from tests.conftest import KafkaBrokerFactory, RedisServerFactory, TopicFactory
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_produce_and_consume_on_a_fresh_topic(
    kafka_bootstrap: str, topic_factory: TopicFactory
) -> None:
    topic = await topic_factory("roundtrip", partitions=3)
    await round_trip(kafka_bootstrap, topic)


async def test_the_embedded_broker_round_trips_a_record(tmp_path: Path) -> None:
    # The demo's and `dev up`'s default broker, started as they start it
    try:
        bootstrap, process = start_embedded_broker(tmp_path)
    except ServiceUnavailable as exc:
        pytest.fail(f"the embedded broker is part of the dev extra: {exc}")
    try:
        topic = f"t-embedded-{uuid.uuid4().hex[:8]}"
        await ensure_topics(
            KafkaSettings(bootstrap_servers=bootstrap), TopicSettings(), more={topic: 1}
        )
        await round_trip(bootstrap, topic)
    finally:
        process.stop()


async def test_apache_kafka_keeps_acknowledged_records_across_a_kill(
    kafka_broker_factory: KafkaBrokerFactory,
) -> None:
    # Given a node of the test's own with a topic and a record acknowledged by it
    broker = kafka_broker_factory()
    topic = "t-kept"
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    await ensure_topics(kafka, TopicSettings(), more={topic: 1})
    await produce(broker.bootstrap, topic, b"before")
    # When it is killed with SIGKILL and started again on the same store
    broker.kill()
    broker.start()
    # Then the record is still there, and the node takes new ones at the same address
    await produce(broker.bootstrap, topic, b"after")
    assert await read_values(broker.bootstrap, topic, 2) == [b"before", b"after"]


async def produce(bootstrap: str, topic: str, value: bytes) -> RecordMetadata:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        return await producer.send_and_wait(topic, value, key=b"flag-1")
    finally:
        await producer.stop()


async def read_values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        received: list[bytes] = []

        async def read() -> bool:
            batches = await consumer.getmany(timeout_ms=500)
            received.extend(r.value for rs in batches.values() for r in rs if r.value is not None)
            assert len(received) >= count, f"{len(received)} of {count} records"
            return True

        await eventually(read, timeout=60, what=f"{count} records read back")
        return received
    finally:
        await consumer.stop()


async def round_trip(kafka_bootstrap: str, topic: str) -> None:
    """A record produced, then read back by a consumer group that commits its offset."""
    sent = await produce(kafka_bootstrap, topic, b"payload")
    assert sent.topic == topic

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[ConsumerRecord[bytes, bytes]] = []

        async def read() -> bool:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                received.extend(records)
            return bool(received)

        await eventually(read, timeout=30, what="a record read back")
        assert consumer.assignment(), "the group never assigned partitions"
        await consumer.commit()
    finally:
        await consumer.stop()

    assert [(r.key, r.value) for r in received] == [(b"flag-1", b"payload")]
    assert received[0].partition == sent.partition


async def test_topic_factory_names_are_unique(topic_factory: TopicFactory) -> None:
    first = await topic_factory("same hint/with odd chars", partitions=1)
    second = await topic_factory("same hint/with odd chars", partitions=1)
    assert first != second
    assert first.startswith("t-same-hint-with-odd-chars-")


async def test_namespace_keys_round_trip_and_are_cleaned_up(
    redis_url: str, redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    assert redis_namespace.startswith("rctest:")
    await redis_client.set(f"{redis_namespace}:k", b"v")
    await redis_client.hset(f"agg:{{{redis_namespace}:flag}}", mapping={b"n": b"1"})
    assert await redis_client.get(f"{redis_namespace}:k") == b"v"
    assert await redis_client.hget(f"agg:{{{redis_namespace}:flag}}", b"n") == b"1"


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5)


def _with_client(url: str, action: Callable[[redis.Redis], object]) -> object:
    client = _client(url)
    try:
        return action(client)
    finally:
        client.close()


def test_persistent_server_keeps_keys_across_stop_and_kill(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(persistent=True)
    url, port = server.url, server.port

    _with_client(url, lambda c: c.mset({"a": "1", "b": "2"}))
    server.stop()
    server.stop()  # idempotent
    assert not server.running()
    server.start()
    assert (server.url, server.port) == (url, port)
    assert _with_client(url, lambda c: c.mget("a", "b")) == [b"1", b"2"]

    # appendfsync always: an acknowledged write survives SIGKILL.
    _with_client(url, lambda c: c.set("c", "3"))
    server.kill()
    assert not server.running()
    server.start()
    assert _with_client(url, lambda c: c.mget("a", "b", "c")) == [b"1", b"2", b"3"]

    server.restart()
    assert _with_client(url, lambda c: c.dbsize()) == 3


def test_volatile_server_forgets_keys_on_restart(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(persistent=False)
    _with_client(server.url, lambda c: c.set("gone", "1"))
    server.restart()
    assert _with_client(server.url, lambda c: c.exists("gone")) == 0


async def test_a_follower_finds_an_existing_topic_on_apache_kafka(
    kafka_broker_factory: KafkaBrokerFactory,
) -> None:
    # Apache Kafka answers a metadata request for an empty topic list with no topics,
    # the embedded broker with all of them: a reader must ask for the topic itself.
    broker = kafka_broker_factory()
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    topic = "t-followed"
    await ensure_topics(kafka, TopicSettings(), more={topic: 3})
    await produce(broker.bootstrap, topic, b"state")
    for _ in range(3):  # each start is a fresh client with fresh cached metadata
        follower = TopicFollower(kafka, topic)
        await follower.start()
        try:
            assert await follower.values(5000) == [b"state"]
        finally:
            await follower.stop()
