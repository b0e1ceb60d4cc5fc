"""Records deleted from a partition before any instance first counted it, on Apache Kafka.

A partition with no stored offset has nothing to compare its log with. So the first
claim of one records where every partition's log starts, and a partition still never
counted whose first fetch begins past that start is held like any other gap: an owner
that never flushed (frozen, or a controller stopped longer than retention) would
otherwise have its first records read past in silence. Records are deleted with the
admin client's DeleteRecords, which is what retention does to a log's start.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from controller.adapters.kafka import EventConsumer, partition_for
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.ingest_progress import GapStore
from controller.core.rollouts import RaiseAlert
from controller.daemon.ingest.ingest import Ingest
from controller.daemon.ingest.log_gaps import LogGaps
from controller.daemon.metrics import Metrics
from controller.settings import IngestSettings, KafkaSettings, RedisSettings
from tests.integration.ingest.test_fencing import NoLetters
from tests.integration.ingest.test_held_batches import TopicFactory
from tests.integration.rig import Rig
from tests.support.reference import make_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
PARTITIONS = 2


async def test_a_partition_whose_first_records_were_deleted_before_first_counted_is_held(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> None:
    topic = await topic_factory("uncounted", partitions=PARTITIONS)
    rig = Rig(kafka_bootstrap, redis_url, topic, "unused-dlq", redis_namespace)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, group_id=f"g-{redis_namespace}")
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    rng = random.Random(7)
    events = [make_event(rng, i, units=400) for i in range(600)]
    on = {p: [e for e in events if partition_for(e["unit"], PARTITIONS) == p] for p in (0, 1)}
    flags = {e["flag"] for e in events}
    async with connect(settings) as client:
        gap_store = GapStore(client, settings=settings, topic=topic)
        store = RedisAggregateStore(client, settings=settings, topic=topic)

        def run(alerts: list[RaiseAlert]) -> Ingest:
            gaps = LogGaps(store=gap_store, topic=topic, alarm=alerts.append)
            settings = IngestSettings(fetch_timeout_ms=100, max_batch_records=1000)
            return Ingest(settings=settings, metrics=Metrics(), gaps=gaps)

        # Given an instance that claims both partitions and counts partition 0's events,
        # partition 1 holding none yet (the first claim records where every log starts)
        await rig.produce_events(on[0])

        async def counted_and_claimed() -> bool:
            await rig.wait_counted(flags, len(on[0]), what="partition 0's events")
            return await gap_store.first_start(1) == 0

        await _while(kafka, topic, store, run([]), counted_and_claimed)
        assert await store.offset(1) is None
        # When partition 1 gets records, and retention deletes its first ones before any
        # instance counted them
        await rig.produce_events(on[1])
        cut = len(on[1]) // 2
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, 1): RecordsToDelete(cut)})
        finally:
            await admin.close()
        # Then the next instance holds partition 1, with the critical alert naming the loss
        alerts: list[RaiseAlert] = []
        ingest = run(alerts)
        await _while(kafka, topic, store, ingest, lambda: ingest.held() is not None)
        assert await gap_store.held() == {1}
        [alert] = [a for a in alerts if a.kind == "events_log_gap"]
        assert (alert.details["partition"], alert.details["beginning"]) == (1, cut)
        assert (alert.details["first_start"], alert.details["fits"]) == (0, "reread")
        assert "before they were first counted" in alert.summary
        assert await store.offset(1) is None  # nothing of it counted
        assert await rig.counted(flags) == len(on[0])


async def _while(
    kafka: KafkaSettings,
    topic: str,
    store: RedisAggregateStore,
    ingest: Ingest,
    done: Callable[[], object],
) -> None:
    """Run ``ingest`` on the real broker until ``done()`` holds; then stop it."""
    consumer = EventConsumer(kafka=kafka, topic=topic, listener=ingest, start_from="earliest")
    async with consumer:
        task = asyncio.create_task(
            ingest.run(source=consumer, store=store, dead_letters=NoLetters())
        )
        try:
            await eventually(done, timeout=60, what="the instance's work")
        finally:
            ingest.stop()
            await asyncio.wait_for(task, 30)
