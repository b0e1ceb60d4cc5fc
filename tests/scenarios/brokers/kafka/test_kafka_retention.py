"""Apache Kafka deletes records the daemon had not counted yet: held, never skipped silently.

Retention (or an operator's ``kafka-delete-records``) moves a partition's log start
forward. Records past the stored offset that it deletes were never counted; a consumer
positioned before the log start is reset by the client to the earliest offset, and
reading on from there would skip them without a word. So a partition whose log now
starts after its stored offset is held, with a critical alert and ``/readyz`` naming
it, until an operator chooses; ``rolloutctl ingest reread`` then counts every record
the log still holds, once.

The records are deleted with the admin client's DeleteRecords, which is what retention
does to the log start, at once and to the offset the test names.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from tests.scenarios.brokers.lost_broker import (
    FLAG,
    PARTITIONS,
    counted,
    held_alerts,
    lost_broker_world,
    ready,
    readyz,
    rolloutctl,
    stored_offsets,
)
from tests.scenarios.harness import Scenario, manual_plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_records_deleted_before_they_were_counted_hold_the_partition(
    apache_kafka_bootstrap: str,
    redis_url: str,
    redis_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bootstrap = apache_kafka_bootstrap
    async with lost_broker_world(
        bootstrap, redis_url, redis_namespace, tmp_path, RC_INGEST__STALL_AFTER_SECONDS="600"
    ) as (world, url):
        # Given a rollout whose events are all counted
        world.start_daemon()
        await world.start(FLAG, manual_plan())
        before = await _send(world, 2000)

        async def all_counted() -> bool:
            assert await counted(world) == before
            return True

        await world.until(all_counted, timeout=60, what="every event counted")
        # When the daemon is down while apps send more, and the broker deletes the first
        # half of those (not counted yet) from every partition
        world.daemon.kill()
        await _send(world, 2000)
        stored = await stored_offsets(world)
        kept = await _delete_half_of_the_uncounted(bootstrap, world.topics["events"], stored)
        world.daemon.start()  # held partitions are not claimed for reading: no partition_claimed

        # Then every partition is held, with a critical alert naming the new log start
        alerts = await world.until(
            lambda: held_alerts(world) if len(held_alerts(world)) == PARTITIONS else None,
            timeout=60,
            what="an events_log_gap alert per partition",
        )
        for alert in alerts:
            details = alert["details"]
            assert alert["severity"] == "critical", alert
            assert details["stored_offset"] == stored[details["partition"]], alert
            assert details["beginning"] > details["stored_offset"], alert
            assert alert["details"]["fits"] == "reread", alert
        # and /readyz names them, and nothing past the deleted records is counted meanwhile
        status, body = await readyz(url)
        assert status == 503, body
        assert all(f"p{p}:" in body["reason"] for p in range(PARTITIONS)), body
        assert "uncounted records deleted" in body["reason"], body
        assert await counted(world) == before
        assert await stored_offsets(world) == stored

        # When an operator chooses to count what the log still holds
        code = await asyncio.to_thread(
            rolloutctl, world, tmp_path / "keys", monkeypatch, "ingest", "reread"
        )
        assert code == 0, world.daemon.log_text()[-3000:]

        # Then every record left on the log is counted, once, and the daemon is ready
        async def counted_again() -> bool:
            assert await counted(world) == before + kept
            return True

        await world.until(counted_again, timeout=60, what="the records kept counted")
        await world.until(lambda: ready(url), timeout=30, what="/readyz ready again")


async def _send(world: Scenario, count: int) -> int:
    """Run the apps until ``count`` more events went; the total sent."""
    start = world.events_sent
    world.run_apps(FLAG, rate=2000)
    await world.until(lambda: world.events_sent >= start + count, timeout=60, what="events sent")
    await world.stop_apps()
    return world.events_sent


async def _delete_half_of_the_uncounted(
    bootstrap: str, topic: str, stored: dict[int, int | None]
) -> int:
    """Move each partition's log start halfway from its stored offset to its end; the
    number of records left past the new starts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ends = await _ends(bootstrap, topic)
        cuts = {}
        for partition, end in ends.items():
            offset = stored[partition]
            assert offset is not None, partition
            assert end - offset >= 2, (partition, offset, end)
            cuts[partition] = offset + (end - offset) // 2
        starts = await admin.delete_records(
            {TopicPartition(topic, p): RecordsToDelete(cut) for p, cut in cuts.items()}
        )
    finally:
        await admin.close()
    assert {tp.partition: start for tp, start in starts.items()} == cuts
    return sum(ends[p] - cut for p, cut in cuts.items())


async def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}
