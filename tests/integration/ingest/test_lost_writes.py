"""Redis loses writes it acknowledged (a failover to a lagging replica): ingest replays them.

Fault injection on a real Redis and a real consumer group: the store's keys of
partition 0 are put back to a snapshot taken a batch earlier, which is what a
replica promoted without the last flushes holds, at the moment one flush meets
the failover (it fails as unreachable first, pausing the batch's partitions).
The retried flush finds the stored offset behind this owner's: not another
owner, so ingest claims the partition again, reads it from the stored offset
and raises an alert; the other partition goes on; every event counts once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

import pytest

from controller.adapters.kafka import EventConsumer
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient
from controller.core.common.errors import StoreUnavailable
from controller.core.machine.log_gaps import LogIdentity
from controller.core.rollouts.actions import RaiseAlert
from controller.core.stats.folding import PartitionDelta
from controller.daemon.ingest.ingest import Ingest
from controller.daemon.metrics import Metrics
from controller.ports import Claim, DeadLetter, FlushOutcome
from controller.settings import IngestSettings, KafkaSettings, RedisSettings, RetrySettings
from tests.integration.rig import Rig, flags_of
from tests.support.reference import make_event

pytestmark = pytest.mark.integration
TopicFactory = Callable[..., Awaitable[str]]


async def snapshot(client: RedisClient, tag: str) -> dict[bytes, bytes]:
    """Every key of one partition (its hash tag) as DUMP payloads."""
    saved = {}
    async for key in client.scan_iter(match=f"{tag}*"):
        payload = await client.dump(key)
        assert payload is not None
        saved[key] = payload
    return saved


async def restore(client: RedisClient, tag: str, saved: dict[bytes, bytes]) -> None:
    """Put the partition's keys back to ``saved``: later writes are gone, as after a failover."""
    keys = [key async for key in client.scan_iter(match=f"{tag}*")]
    if keys:
        await client.delete(*keys)
    for key, payload in saved.items():
        await client.restore(key, 0, payload, replace=True)


class FailingOver:
    """The real store, except that once armed, partition 0's next flush meets a failover."""

    def __init__(self, store: RedisAggregateStore, lose: Callable[[], Awaitable[None]]) -> None:
        self._store, self._lose = store, lose
        self.armed = False

    async def claim(self, partition: int) -> Claim:
        return await self._store.claim(partition)

    async def flush(
        self,
        delta: PartitionDelta,
        *,
        epoch: int,
        expected_offset: int | None,
        log: LogIdentity | None = None,
    ) -> FlushOutcome:
        if self.armed and delta.partition == 0:
            self.armed = False
            await self._lose()
            raise StoreUnavailable("redis unreachable: the master went away (injected)")
        return await self._store.flush(delta, epoch=epoch, expected_offset=expected_offset, log=log)


class NoLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"no event here is bad: {letters}")


async def test_writes_redis_lost_are_replayed_and_alerted(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> None:
    topic = await topic_factory("lost", partitions=2)
    rig = Rig(kafka_bootstrap, redis_url, topic, "unused-dlq", redis_namespace)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, group_id=f"g-{redis_namespace}")
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    rng = random.Random(23)
    batches = [[make_event(rng, i) for i in range(n, n + 300)] for n in (0, 300, 600)]
    every = [e for batch in batches for e in batch]
    tag = f"{{{redis_namespace}:{topic}:0}}"
    alerts: list[RaiseAlert] = []
    metrics = Metrics()
    ingest = Ingest(
        settings=IngestSettings(fetch_timeout_ms=100),
        metrics=metrics,
        alarm=alerts.append,
        retry=RetrySettings(initial_seconds=0.01),
    )
    async with connect(settings) as client:
        saved: dict[bytes, bytes] = {}
        store = FailingOver(
            RedisAggregateStore(client, settings=settings, topic=topic),
            lose=lambda: restore(client, tag, saved),
        )
        consumer = EventConsumer(kafka=kafka, topic=topic, listener=ingest, start_from="earliest")
        async with consumer:
            task = asyncio.create_task(
                ingest.run(source=consumer, store=store, dead_letters=NoLetters())
            )
            # Given a first batch counted, and the partition's keys as a replica holds them
            await rig.produce_events(batches[0])
            await rig.wait_counted(flags_of(every), 300, what="the first batch")
            saved.update(await snapshot(client, tag))
            # and a second batch the master acknowledged but never replicated
            await rig.produce_events(batches[1])
            await rig.wait_counted(flags_of(every), 600, what="the second batch")
            # When a flush meets the failover that loses it
            store.armed = True
            await rig.produce_events(batches[2])
            # Then every partition is read again, and every event counts exactly once
            await rig.settle()
            await rig.assert_exact(every)
            assert not store.armed, "the failover was never met"
            assert ingest.stats.lost_writes == 1
            assert ingest.owned_partition_ids == [0, 1]
            assert ingest.waiting_partition_ids == []
            # and people are told that Redis lost acknowledged writes
            assert [(a.kind, a.details["partition"]) for a in alerts] == [("store_lost_writes", 0)]
            stored, acknowledged = (alerts[0].details[k] for k in ("stored_offset", "acknowledged"))
            assert isinstance(stored, int)
            assert isinstance(acknowledged, int)
            assert stored < acknowledged
            text = metrics.exposition().decode()
            assert 'rollout_store_lost_writes_total{partition="0"} 1.0' in text
            ingest.stop()
            await asyncio.wait_for(task, 30)
