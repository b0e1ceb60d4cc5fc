"""A late flush from a former owner is refused: two ingest instances, one partition, a real group.

The old owner's flush is held in flight (fault injection: its store waits
before sending the script) while a second instance joins the consumer group,
takes the partition over, claims it and counts the same records. Released
after that, the old flush reaches Redis with a stale epoch and is refused;
every event is counted exactly once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence

import pytest

from controller.adapters.kafka import EventConsumer
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.machine.log_gaps import LogIdentity
from controller.core.stats.folding import PartitionDelta
from controller.daemon.ingest.ingest import Ingest
from controller.daemon.metrics import Metrics
from controller.ports import Claim, DeadLetter, FlushOutcome
from controller.settings import IngestSettings, KafkaSettings, RedisSettings
from tests.integration.rig import Rig
from tests.support.reference import make_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
TopicFactory = Callable[..., Awaitable[str]]


class HeldStore:
    """The real store, except that one flush waits for :meth:`release` once armed."""

    def __init__(self, store: RedisAggregateStore) -> None:
        self._store = store
        self.armed = False
        self.holding = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

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
        if self.armed:
            self.armed = False
            self.holding.set()
            await self._released.wait()
        return await self._store.flush(delta, epoch=epoch, expected_offset=expected_offset, log=log)


class NoLetters:
    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        raise AssertionError(f"no event here is bad: {letters}")


async def test_a_flush_held_across_a_rebalance_is_refused(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> None:
    events_topic = await topic_factory("fenced", partitions=1)
    rig = Rig(kafka_bootstrap, redis_url, events_topic, "unused-dlq", redis_namespace)
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{redis_namespace}",
        session_timeout_ms=3000,
        heartbeat_interval_ms=300,
    )
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    rng = random.Random(5)
    first = [make_event(rng, i) for i in range(300)]
    second = [make_event(rng, i) for i in range(300, 600)]
    flags = {e["flag"] for e in first + second}
    ingest_settings = IngestSettings(fetch_timeout_ms=100, max_batch_records=1000)
    async with connect(settings) as client_a, connect(settings) as client_b:
        held = HeldStore(RedisAggregateStore(client_a, settings=settings, topic=events_topic))
        store_b = RedisAggregateStore(client_b, settings=settings, topic=events_topic)
        old = Ingest(settings=ingest_settings, metrics=Metrics())
        new = Ingest(settings=ingest_settings, metrics=Metrics())
        # Member ids start with the client id and the assignor sorts them: the
        # newcomer, "a-...", is given the topic's one partition when it joins.
        consumer_a = EventConsumer(
            kafka=kafka.model_copy(update={"client_id": "z-old-owner"}),
            topic=events_topic,
            listener=old,
            start_from="earliest",
        )
        consumer_b = EventConsumer(
            kafka=kafka.model_copy(update={"client_id": "a-new-owner"}),
            topic=events_topic,
            listener=new,
            start_from="earliest",
        )
        async with consumer_a:
            task_a = asyncio.create_task(
                old.run(source=consumer_a, store=held, dead_letters=NoLetters())
            )
            # Given the old owner has counted a first batch
            await rig.produce_events(first)
            await rig.wait_counted(flags, len(first), what="the old owner's first batch")
            # When its next flush is held in flight
            held.armed = True
            await rig.produce_events(second)
            await asyncio.wait_for(held.holding.wait(), 60)
            # and a new instance joins, takes the partition over and counts the batch itself
            async with consumer_b:
                task_b = asyncio.create_task(
                    new.run(source=consumer_b, store=store_b, dead_letters=NoLetters())
                )
                await rig.wait_counted(flags, len(first) + len(second), what="the new owner")
                assert new.owned_partition_ids == [0]
                # Then the old owner's flush, released late, is refused by the fencing epoch
                held.release()
                await eventually(
                    lambda: old.stats.fenced == 1, timeout=60, what="the late flush to be fenced"
                )
                assert old.owned_partition_ids == []
                # and every event is counted exactly once
                await rig.assert_exact(first + second)
                for ingest in (old, new):
                    ingest.stop()
                await asyncio.wait_for(asyncio.gather(task_a, task_b), 30)
