"""The daemon's publisher across a leader change: a three-node Apache Kafka cluster loses
the leader of the decisions partition (SIGKILL) mid-publish, and the topic holds every
message once, in order.

What makes it so: acks=all with two replicas in sync, so an acknowledged message
survives its leader; and the idempotent producer, so a request the dead leader wrote but
never answered, sent again to the new leader, is not written twice.

    python -m pytest -s tests/integration/kafka/test_outbox_leader_change.py   # prints the figures
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.kafka import Producer, Publisher
from controller.core.common import BrokerError
from controller.dev.kafka_cluster import KafkaCluster
from controller.dev.processes import ServiceUnavailable
from controller.settings import KafkaSettings
from tests.support.backing.reading import read_to_end
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

TOPIC = "rollout.decisions"
MESSAGES = 3000
BATCH = 10
KILL_AT = MESSAGES // 3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    try:
        started = KafkaCluster(tmp_path / "cluster").start()
    except ServiceUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"SERVICE MISSING: {exc} (CI is set, so a missing service is a failure)")
        pytest.skip(f"SERVICE MISSING: {exc}")
    rss = started.rss_bytes() / 2**20
    print(f"\n3-node Apache Kafka cluster started in {started.started_in:.1f} s, RSS {rss:.0f} MiB")
    try:
        yield started
    finally:
        started.stop()


async def _describe(bootstrap: str) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([TOPIC])
    finally:
        await admin.close()
    partitions: list[dict[str, Any]] = described.get("partitions") or []
    assert len(partitions) == 1, described
    return partitions[0]


async def _replicated(bootstrap: str) -> int:
    """The partition's leader, once all three replicas are in sync."""
    partition = await _describe(bootstrap)
    assert len(partition["isr"]) == 3, partition
    leader: int = partition["leader"]
    return leader


async def _create_topic(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=3)])
    finally:
        await admin.close()
    leader: int = await eventually(lambda: _replicated(bootstrap), timeout=60, what="3 in sync")
    return leader


class Publishing:
    """Publishes MESSAGES numbered decisions in batches, each retried until it goes, as the
    outbox does; counts the batches that failed."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self.published = 0
        self.failures: list[str] = []

    async def run(self) -> None:
        while self.published < MESSAGES:
            batch = range(self.published, self.published + BATCH)
            messages = [(TOPIC, "checkout", orjson.dumps({"seq": seq})) for seq in batch]
            try:
                await self._publisher.publish(messages)
            except BrokerError as exc:
                self.failures.append(str(exc))
                await asyncio.sleep(0.5)
                continue
            self.published += BATCH


async def test_a_leader_lost_mid_publish_leaves_every_message_once_in_order(
    cluster: KafkaCluster,
) -> None:
    # Given the decisions partition on three nodes, and the daemon's publisher sending to it
    leader = await _create_topic(cluster.bootstrap)
    producer = Producer(kafka=KafkaSettings(bootstrap_servers=cluster.bootstrap))
    async with producer:
        assert producer.idempotent
        publishing = Publishing(Publisher(producer=producer))
        task = asyncio.create_task(publishing.run())
        # When the partition's leader is killed mid-publish
        await eventually(lambda: publishing.published >= KILL_AT, timeout=120, what="publishing")
        killed_at = time.monotonic()
        cluster.nodes[leader].kill()
        await asyncio.wait_for(task, timeout=300)
        print(f"the rest published {time.monotonic() - killed_at:.1f} s after the kill")
    # Then another node leads, no publish failed, and the topic holds every message once
    assert (await _describe(cluster.bootstrap))["leader"] not in (leader, -1)
    assert publishing.failures == []
    records = await read_to_end(cluster.bootstrap, TOPIC, partitions=1, timeout=60)
    assert [orjson.loads(r.value)["seq"] for r in records] == list(range(MESSAGES))
