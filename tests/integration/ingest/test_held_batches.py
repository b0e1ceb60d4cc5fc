"""Batches folded while a flush runs: a crash between that flush and the next loses and doubles
nothing. A real group, a real broker, a real Redis.

While a flush is in flight, ingest folds the batches fetched meanwhile on into the next flush.
The flushes are held (fault injection: the store waits before sending the script) so that the
crash falls exactly between them: neither in Redis, the first in Redis and the next one not
yet, or both. The crash is the task's end with nothing flushed or committed after it, as a kill
-9 leaves it; a new instance then reads from the offset stored in Redis.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from controller.adapters.kafka import EventConsumer
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.ingest_progress import GapStore
from controller.core.machine.log_gaps import LogIdentity
from controller.core.stats.folding import PartitionDelta
from controller.daemon.ingest.ingest import Ingest
from controller.daemon.ingest.log_gaps import LogGaps
from controller.daemon.metrics import Metrics
from controller.ports import Claim, FlushOutcome, Record
from controller.settings import IngestSettings, KafkaSettings, RedisSettings
from tests.integration.ingest.test_fencing import NoLetters
from tests.integration.rig import Rig
from tests.support.reference import make_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
TopicFactory = Callable[..., Awaitable[str]]


class GatedStore:
    """The real store, except that once armed each flush waits for a permit (``release``)."""

    def __init__(self, store: RedisAggregateStore) -> None:
        self._store = store
        self.armed = False
        self.waiting = 0
        self.gated_to = 0
        """The next offset of the flush waiting for a permit: what it carries ends there."""
        self.applied = 0
        self._permits = asyncio.Semaphore(0)

    def release(self) -> None:
        self._permits.release()

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
            self.gated_to = delta.next_offset
            self.waiting += 1
            await self._permits.acquire()
            self.waiting -= 1
        outcome = await self._store.flush(
            delta, epoch=epoch, expected_offset=expected_offset, log=log
        )
        self.applied += 1
        return outcome


def applied_reaches(store: GatedStore, flushes: int) -> Callable[[], bool]:
    return lambda: store.applied == flushes


def fetched_reaches(store: GatedStore, ingest: Ingest, offset: int) -> Callable[[], bool]:
    """Every record before ``offset`` is in the flush in flight or folded and held after it
    (one partition, its offsets from 0); a failure names where each stands."""

    def reached() -> bool:
        gated, held = store.gated_to, ingest.held_records
        assert gated + held == offset, (
            f"the flush in flight ends at {gated}, {held} records held after it, "
            f"{store.waiting} flush(es) waiting, {store.applied} applied, "
            f"{ingest.stats.batches} flushes done, {ingest.stats.events} events counted"
        )
        return True

    return reached


@pytest.mark.parametrize(
    "in_redis", [0, 1, 2], ids=["neither-in-redis", "the-first-in-redis", "both-in-redis"]
)
async def test_a_crash_between_a_flush_and_the_batches_folded_meanwhile_is_exact(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: TopicFactory,
    redis_namespace: str,
    in_redis: int,
) -> None:
    topic = await topic_factory("held", partitions=1)
    rig = Rig(kafka_bootstrap, redis_url, topic, "unused-dlq", redis_namespace)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, group_id=f"g-{redis_namespace}")
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    rng = random.Random(17)
    first, second, third = (
        [make_event(rng, i, flags=3, units=50) for i in range(start, start + 400)]
        for start in (0, 400, 800)
    )
    everything = first + second + third
    flags = {e["flag"] for e in everything}
    ingest_settings = IngestSettings(fetch_timeout_ms=100, max_batch_records=1000)
    async with connect(settings) as client:
        gated = GatedStore(RedisAggregateStore(client, settings=settings, topic=topic))
        crashed = Ingest(settings=ingest_settings, metrics=Metrics())
        consumer = EventConsumer(kafka=kafka, topic=topic, listener=crashed, start_from="earliest")
        async with consumer:
            task = asyncio.create_task(
                crashed.run(source=consumer, store=gated, dead_letters=NoLetters())
            )
            # Given a first batch counted
            await rig.produce_events(first)
            await rig.wait_counted(flags, len(first), what="the first batch")
            # When the next flush is in flight while the batch after it is fetched and
            # folded on into the flush after that
            gated.armed = True
            await rig.produce_events(second)
            await eventually(lambda: gated.waiting == 1, timeout=60, what="a flush in flight")
            # (in two fetches at least, the second folded on into the first's delta; the
            # second batch's last records may be held already, fetched after its flush began)
            fetched, half = len(first) + len(second), len(third) // 2
            for part in ([], third[:half], third[half:]):
                await rig.produce_events(part)
                fetched += len(part)
                await eventually(
                    fetched_reaches(gated, crashed, fetched),
                    timeout=60,
                    what=f"the {fetched} records fetched in flight or held",
                )
            assert crashed.held_records >= len(third)
            # and the flush in flight reaches Redis, then the held one (or not)
            for applied in range(gated.applied + 1, gated.applied + 1 + in_redis):
                gated.release()
                await eventually(
                    applied_reaches(gated, applied), timeout=60, what=f"{applied} flushes"
                )
            # and the instance dies there, its flush in flight with it
            flushes = [t for t in asyncio.all_tasks() if t.get_name() == "ingest-flush"]
            for dying in (task, *flushes):
                dying.cancel()
            await asyncio.gather(task, *flushes, return_exceptions=True)
        # Then a new instance counts every event exactly once
        successor = Ingest(settings=ingest_settings, metrics=Metrics())
        store = RedisAggregateStore(client, settings=settings, topic=topic)
        after = EventConsumer(kafka=kafka, topic=topic, listener=successor, start_from="earliest")
        async with after:
            task = asyncio.create_task(
                successor.run(source=after, store=store, dead_letters=NoLetters())
            )
            await rig.wait_counted(flags, len(everything), what="the successor")
            await rig.settle()  # a batch counted twice would show now
            await rig.assert_exact(everything)
            # read on from the offsets stored with the counts: no copy needed the id window
            assert successor.stats.duplicates == 0
            successor.stop()
            await asyncio.wait_for(task, 30)


class CountingConsumer(EventConsumer):
    """The real consumer, counting how often ingest asks where the log starts and ends."""

    log_ranges = 0
    fetched_to = 0

    async def log_range(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        self.log_ranges += 1
        return await super().log_range(partitions)

    async def fetch(self, *, timeout_ms: int, max_records: int) -> dict[int, list[Record]]:
        batch = await super().fetch(timeout_ms=timeout_ms, max_records=max_records)
        for records in batch.values():
            self.fetched_to = max(self.fetched_to, records[-1].offset + 1)
        return batch


async def test_fetches_that_follow_each_other_do_not_ask_the_broker_where_the_log_starts(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> None:
    """While a flush is in flight the stored offset lags what was fetched: a fetch that goes
    on from the one before skipped nothing, and costs no round trip to the broker."""
    topic = await topic_factory("follows", partitions=1)
    rig = Rig(kafka_bootstrap, redis_url, topic, "unused-dlq", redis_namespace)
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, group_id=f"g-{redis_namespace}")
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    rng = random.Random(19)
    batches = [[make_event(rng, i) for i in range(start, start + 300)] for start in (0, 300, 600)]
    everything = [e for batch in batches for e in batch]
    flags = {e["flag"] for e in everything}
    async with connect(settings) as client:
        gated = GatedStore(RedisAggregateStore(client, settings=settings, topic=topic))
        gaps = LogGaps(store=GapStore(client, settings=settings, topic=topic), topic=topic)
        # The log is also checked each commit interval (for a broker that lost data while
        # read): out of the way here, as only what a fetch costs is counted
        ingest = Ingest(
            settings=IngestSettings(
                fetch_timeout_ms=100, max_batch_records=1000, commit_interval_seconds=3600
            ),
            metrics=Metrics(),
            gaps=gaps,
        )
        consumer = CountingConsumer(
            kafka=kafka, topic=topic, listener=ingest, start_from="earliest"
        )
        async with consumer:
            task = asyncio.create_task(
                ingest.run(source=consumer, store=gated, dead_letters=NoLetters())
            )
            await rig.produce_events(batches[0])
            await rig.wait_counted(flags, len(batches[0]), what="the first batch")
            claimed = consumer.log_ranges  # the first claim's: where each log starts, once
            # a flush in flight while the next records are fetched
            gated.armed = True
            await rig.produce_events(batches[1])
            await eventually(lambda: gated.waiting == 1, timeout=60, what="a flush in flight")
            await rig.produce_events(batches[2])
            await eventually(
                lambda: consumer.fetched_to == len(everything), timeout=60, what="all fetched"
            )
            gated.armed = False
            for _ in range(gated.waiting):
                gated.release()
            await rig.wait_counted(flags, len(everything), what="every event")
            assert consumer.log_ranges == claimed
            ingest.stop()
            await asyncio.wait_for(task, 30)
        await rig.assert_exact(everything)
