"""The broker's log ends a stage about to move waits for, on both brokers the project runs
on (Apache Kafka and the embedded tansu), against the offsets the flushes stored in Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.kafka import LogEndReader
from controller.adapters.redis import connect, ingest_progress
from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.core.common import ControllerError
from controller.core.rollouts import Completeness
from controller.core.stats.folding import PartitionDelta
from controller.daemon.ingest.catch_up import CatchUp
from controller.settings import KafkaSettings, RedisSettings
from tests.integration.rig import drop_keys
from tests.unit.core.machine.gate.test_gate import rollout

pytestmark = pytest.mark.integration
WRITTEN = {0: 2, 1: 0, 2: 5}
"""Records produced to each partition of the topic."""


async def _topic_with_records(bootstrap: str) -> str:
    topic = f"log-ends-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, count in WRITTEN.items():
            for n in range(count):
                await producer.send_and_wait(topic, f"r{n}".encode(), partition=partition)
    finally:
        await producer.stop()
    return topic


@pytest.fixture(params=["apache_kafka_bootstrap", "tansu_bootstrap"])
def bootstrap(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


async def test_the_broker_says_each_partitions_log_end(bootstrap: str) -> None:
    topic = await _topic_with_records(bootstrap)
    reader = LogEndReader(KafkaSettings(bootstrap_servers=bootstrap), timeout_s=10)
    missing = f"never-made-{uuid.uuid4().hex[:8]}"
    assert await reader.log_ends([topic, missing]) == {topic: WRITTEN}


async def test_a_broker_that_cannot_be_asked_fails_within_its_deadline() -> None:
    reader = LogEndReader(KafkaSettings(bootstrap_servers="127.0.0.1:9"), timeout_s=2)
    started = datetime.now(UTC)
    with pytest.raises(ControllerError):
        await reader.log_ends(["events"])
    assert (datetime.now(UTC) - started).total_seconds() < 5


async def test_a_stage_waits_until_the_stored_offsets_reach_the_log_ends(
    bootstrap: str, redis_url: str, redis_namespace: str
) -> None:
    topic = await _topic_with_records(bootstrap)
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    async with connect(settings) as client:
        try:
            store = RedisAggregateStore(client, settings=settings, topic=topic)
            progress = ingest_progress(client, settings=settings, events=topic)
            catch_up = CatchUp(
                ends=LogEndReader(KafkaSettings(bootstrap_servers=bootstrap), timeout_s=10),
                offsets=progress,
                topics=[topic],
                alert_after=None,
            )
            epochs = {p: (await store.claim(p)).epoch for p in WRITTEN}
            # Given partition 0 counted, partition 2 counted to offset 3 of 5
            for partition, offset in ((0, 2), (2, 3)):
                delta = PartitionDelta(partition=partition, next_offset=offset)
                await store.flush(delta, epoch=epochs[partition], expected_offset=None)
            now = datetime.now(UTC)
            said = await catch_up.check(rollout(), now, Completeness())
            assert [(b.partition, b.records, b.stored) for b in said.behind] == [(2, 2, 3)]
            # Then, once it is counted up to its log end, the stage may move
            delta = PartitionDelta(partition=2, next_offset=5)
            await store.flush(delta, epoch=epochs[2], expected_offset=3)
            assert await catch_up.check(rollout(), now, Completeness()) == type(said)()
        finally:
            await drop_keys(client, redis_namespace)
