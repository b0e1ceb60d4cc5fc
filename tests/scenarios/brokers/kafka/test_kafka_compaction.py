"""The flag-state topic compacted by Apache Kafka: a new app still knows every flag.

Apps learn flags only from the compacted flag-state topic. Kafka's log cleaner keeps
the last record of each key and drops the others, leaving holes in the offsets that a
reader must step over. The topic here rolls a segment every 200 ms and is cleaned as
soon as any of it is dirty, so the cleaner runs within the test (the test broker checks
every 500 ms): several flags are moved through stages, the topic is read back with
fewer records than offsets, and a :class:`FlagClient` started then holds each flag's
current state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.kafka import ensure_topics
from controller.core.rollouts.rollout import Rollout
from controller.sdk.flags import FlagClient
from controller.settings import KafkaSettings
from tests.scenarios.brokers.lost_broker import kafka_of, lost_topics, topic_settings
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAGS = ("checkout", "search", "profile", "billing")
COMPACTED_SOON = {
    "cleanup.policy": "compact",
    "segment.ms": "200",
    "min.cleanable.dirty.ratio": "0.001",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


async def test_a_new_app_knows_every_flag_from_a_compacted_flag_state_topic(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    bootstrap = apache_kafka_bootstrap
    topics = lost_topics()
    await _create(bootstrap, topics["flag_state"])
    await ensure_topics(kafka_of(bootstrap), topic_settings(topics))
    async with Scenario(
        bootstrap=bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        topics=topics,
        workdir=tmp_path,
    ) as world:
        # Given flags moved through several stages, each move a new state of the flag
        world.start_daemon()
        for flag in FLAGS:
            await _decided(world, flag, "start", plan=manual_plan())
        for _ in range(3):
            for flag in FLAGS:
                await _decided(world, flag, "promote")
        await _decided(world, FLAGS[-1], "kill")
        rollouts = {flag: await world.rollout(flag) for flag in FLAGS}

        # When Kafka's log cleaner has compacted the topic (more offsets than records)
        topic = topics["flag_state"]
        await eventually(
            lambda: _compacted(bootstrap, topic), timeout=120, what=f"{topic} compacted"
        )
        # Then an app started afterwards holds every flag's current state
        await _app_knows(bootstrap, topic, rollouts)


async def _create(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        new = NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=COMPACTED_SOON)
        await admin.create_topics([new])
    finally:
        await admin.close()


async def _decided(world: Scenario, flag: str, action: str, **options: object) -> None:
    command = world.command(action, flag, **options)
    decision = await world.decided(command, flag=flag, what=f"{action} {flag}")
    assert decision["outcome"] == "applied", decision


async def _compacted(bootstrap: str, topic: str) -> bool:
    """Whether the log holds fewer records than its offsets span (asserted, for waiting)."""
    partition = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        read = 0
        while await consumer.position(partition) < end:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            read += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    assert read < end, f"{read} records over {end} offsets: not compacted yet"
    return True


async def _app_knows(bootstrap: str, topic: str, rollouts: dict[str, Rollout | None]) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    async with FlagClient(kafka, topic=topic) as app:

        def held() -> bool:
            for flag, rollout in rollouts.items():
                assert rollout is not None, flag
                state = app.state(flag)
                assert state is not None, flag
                assert (state.version, state.status) == (
                    rollout.flag_version,
                    rollout.flag_status,
                ), (flag, state, rollout)
            return True

        await eventually(held, timeout=60, what="every flag's current state held by a new app")
        assert app.rejected == 0
