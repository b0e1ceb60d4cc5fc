"""A transactional producer's log is counted to its end, its aborted records never.

Every Kafka transaction ends with a marker: it takes an offset and is never handed to
a consumer, nor are an aborted transaction's records to one that reads committed. On
Apache Kafka, a producer with a ``transactional.id`` (librdkafka, as Kafka Streams,
Flink or Connect would be) commits and aborts while ingest reads: the offset stored in
Redis reaches the broker's log end on every partition, the one whose log ends with a
commit marker, the one whose log ends with an abort, and the one that never held a
committed record, and the counts are those of the committed records alone. A
transaction left open holds its partition where it began (its records are on the log,
whether they count is not known yet) until it commits.

A fetch that moves the consumer's position with no record served may also be the
client's reset after the log lost what was stored: with a stand-in broker that answers
so, the partition is held and its stored offset stays, where a marker's offset alone is
stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Producer

from controller.adapters.kafka import EventConsumer
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.ingest_progress import GapStore
from controller.daemon.ingest.ingest import Ingest
from controller.daemon.ingest.log_gaps import LogGaps
from controller.daemon.metrics import Metrics
from controller.ports import Record
from controller.settings import IngestSettings, KafkaSettings, RedisSettings
from tests.integration.ingest.test_fencing import NoLetters
from tests.integration.rig import Rig
from tests.support.reference import StubRecord, encode, make_event
from tests.support.waiting import eventually
from tests.unit.daemon.ingest.test_partitions import Source

pytestmark = pytest.mark.integration
TopicFactory = Callable[..., Awaitable[str]]
Transaction = tuple[int, list[dict[str, Any]], bool]
"""A transaction's partition, its events, and whether it commits (else it aborts)."""


def transactions(bootstrap: str, topic: str, plan: list[Transaction]) -> None:
    """Write each transaction of ``plan`` in turn with one transactional producer; an
    aborted one's records reach the log before its abort marker."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"tx-{uuid.uuid4().hex[:8]}",
            "linger.ms": 5,
        }
    )
    producer.init_transactions(30)
    for partition, events, commits in plan:
        producer.begin_transaction()
        for event in events:
            key = event["unit"].encode()
            producer.produce(topic, encode(event), key=key, partition=partition)
        if commits:
            producer.commit_transaction(30)
        else:
            assert producer.flush(30) == 0
            producer.abort_transaction(30)
    assert producer.flush(30) == 0


async def log_ends(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The broker's log end offset (high watermark) of every partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: end for tp, end in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def plan_of(rng: random.Random) -> tuple[list[Transaction], list[dict[str, Any]]]:
    """Transactions on three partitions, and the events of those that commit: partition 0
    ends with a commit, partition 1 with an abort, partition 2 only ever aborts."""
    plan: list[Transaction] = []
    committed: list[dict[str, Any]] = []
    i = 0
    for n in range(24):
        partition, turn = n % 3, n // 3
        commits = partition == 0 or (partition == 1 and turn % 2 == 0)
        events = [make_event(rng, i + k, flags=2, units=40) for k in range(rng.randrange(1, 30))]
        for event in events:  # a unit on one partition, as keyed by unit (units per partition)
            event["unit"] = f"p{partition}-{event['unit']}"
        i += len(events)
        plan.append((partition, events, commits))
        committed += events if commits else []
    assert [commits for p, _, commits in plan if p == 1][-1] is False
    return plan, committed


@contextlib.asynccontextmanager
async def reading(
    bootstrap: str, redis_url: str, prefix: str, partitions: int
) -> AsyncIterator[tuple[str, RedisAggregateStore, Ingest]]:
    """Ingest reading a new topic of ``partitions`` on ``bootstrap`` into Redis, every
    partition claimed; the topic, the store and the ingest."""
    topic = f"tx-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])
    finally:
        await admin.close()
    kafka = KafkaSettings(bootstrap_servers=bootstrap, group_id=f"g-{prefix}")
    settings = RedisSettings(url=redis_url, key_prefix=prefix)
    async with connect(settings) as client:
        store = RedisAggregateStore(client, settings=settings, topic=topic)
        gaps = LogGaps(store=GapStore(client, settings=settings, topic=topic), topic=topic)
        ingest = Ingest(settings=IngestSettings(fetch_timeout_ms=100), metrics=Metrics(), gaps=gaps)
        consumer = EventConsumer(kafka=kafka, topic=topic, listener=ingest, start_from="earliest")
        async with consumer:
            task = asyncio.create_task(
                ingest.run(source=consumer, store=store, dead_letters=NoLetters())
            )
            try:
                await eventually(
                    lambda: ingest.owned_partitions == partitions, timeout=60, what="claimed"
                )
                yield topic, store, ingest
            finally:
                ingest.stop()
                await asyncio.wait_for(task, 30)


async def stored_at(store: RedisAggregateStore, wanted: dict[int, int]) -> bool:
    found = {p: await store.offset(p) for p in wanted}
    assert found == wanted, f"stored {found}, wanted {wanted}"
    return True


async def test_a_transactional_producers_log_is_counted_to_its_end(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str
) -> None:
    bootstrap = apache_kafka_bootstrap
    plan, committed = plan_of(random.Random(78))
    async with reading(bootstrap, redis_url, redis_namespace, 3) as (topic, store, ingest):
        # Given transactions committed and aborted while ingest reads
        await asyncio.to_thread(transactions, bootstrap, topic, plan)
        ends = await log_ends(bootstrap, topic, 3)
        # Then every partition is counted up to the broker's log end
        await eventually(lambda: stored_at(store, ends), timeout=60, what="every log counted")
        assert ingest.held() is None
    # and what is counted is the committed records, exactly: no aborted one
    rig = Rig(bootstrap, redis_url, topic, "unused-dlq", redis_namespace)
    await rig.assert_exact(committed)


async def test_an_open_transaction_is_counted_once_it_commits_and_holds_its_partition_till_then(
    apache_kafka_bootstrap: str, redis_url: str, redis_namespace: str
) -> None:
    bootstrap = apache_kafka_bootstrap
    first, held, later = (events_on(partition, k) for k, partition in enumerate((0, 0, 1)))
    async with reading(bootstrap, redis_url, redis_namespace, 2) as (topic, store, _):
        rig = Rig(bootstrap, redis_url, topic, "unused-dlq", redis_namespace)
        producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": topic})
        await asyncio.to_thread(producer.init_transactions, 30)
        # Given a partition counted to its end
        await asyncio.to_thread(_committed, producer, topic, 0, first)
        await eventually(lambda: stored_at(store, {0: 6}), timeout=60, what="the first counted")
        # When a transaction's records are on its log, the transaction still open
        producer.begin_transaction()
        await asyncio.to_thread(_written, producer, topic, 0, held)
        # Then, though later records of the other partition are counted, they are not
        async with AIOKafkaProducer(bootstrap_servers=bootstrap) as plain:
            for event in later:
                await plain.send_and_wait(topic, encode(event), partition=1)
        await eventually(lambda: stored_at(store, {1: 5}), timeout=60, what="partition 1")
        assert await store.offset(0) == 6
        assert (await log_ends(bootstrap, topic, 2))[0] == 6 + len(held)
        # And once it commits, partition 0 is counted to its end, the transaction with it
        await asyncio.to_thread(producer.commit_transaction, 30)
        end = (await log_ends(bootstrap, topic, 2))[0]
        assert end == 6 + len(held) + 1  # its commit marker
        await eventually(lambda: stored_at(store, {0: end}), timeout=60, what="the commit")
    await rig.assert_exact(first + held + later)


def _written(producer: Producer, topic: str, partition: int, events: list[dict[str, Any]]) -> None:
    for event in events:
        producer.produce(topic, encode(event), key=event["unit"].encode(), partition=partition)
    assert producer.flush(30) == 0


def events_on(partition: int, k: int) -> list[dict[str, Any]]:
    """Five events of units of their own on ``partition`` (the ``k``-th five)."""
    rng = random.Random(k)
    events = [make_event(rng, 100 * k + i, flags=1) for i in range(5)]
    return [{**e, "unit": f"p{partition}-{e['unit']}"} for e in events]


def _committed(
    producer: Producer, topic: str, partition: int, events: list[dict[str, Any]]
) -> None:
    producer.begin_transaction()
    _written(producer, topic, partition, events)
    producer.commit_transaction(30)


class Skipping(Source):
    """A stand-in broker with one partition, on a log that starts at 0: its first fetch
    serves five records; after :meth:`then`, the log starts at ``start`` and the next
    fetch serves none but leaves the consumer at ``position``."""

    def __init__(self, *, position: int, start: int) -> None:
        super().__init__({0: position})
        rng = random.Random(5)
        events = [make_event(rng, i, flags=1) for i in range(5)]
        records: list[Record] = [StubRecord(encode(e), i) for i, e in enumerate(events)]
        self._fetches: list[tuple[dict[int, list[Record]], int]] = [
            ({0: records}, 5),
            ({}, position),
        ]
        self._start, self._later, self._at = 0, start, 0
        self._more = asyncio.Event()
        self._more.set()

    def then(self) -> None:
        self._start = self._later
        self._more.set()

    async def fetch(self, *, timeout_ms: int, max_records: int) -> dict[int, list[Record]]:
        with contextlib.suppress(TimeoutError):  # a broker's long poll
            await asyncio.wait_for(self._more.wait(), timeout_ms / 1000)
        if not self._more.is_set() or not self._fetches:
            return {}
        self._more.clear()
        batch, self._at = self._fetches.pop(0)
        return batch

    def read_to(self, partition: int) -> int | None:
        return self._at

    async def log_range(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        return {p: (self._start, self.ends[p]) for p in partitions if p in self.ends}


@pytest.mark.parametrize(
    ("start", "held"),
    [(0, False), (8, True)],
    ids=["markers-after-the-records", "a-reset-past-records-deleted"],
)
async def test_a_move_with_no_record_is_stored_only_where_the_log_holds_what_it_passed(
    redis_url: str, redis_namespace: str, start: int, held: bool
) -> None:
    topic = f"skip-{uuid.uuid4().hex[:8]}"
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    source = Skipping(position=8, start=start)
    async with connect(settings) as client:
        store = RedisAggregateStore(client, settings=settings, topic=topic)
        gaps = LogGaps(store=GapStore(client, settings=settings, topic=topic), topic=topic)
        ingest = Ingest(settings=IngestSettings(fetch_timeout_ms=20), metrics=Metrics(), gaps=gaps)
        ingest.partitions_assigned([0])
        task = asyncio.create_task(ingest.run(source=source, store=store, dead_letters=NoLetters()))
        try:

            async def stored(offset: int) -> bool:
                assert await store.offset(0) == offset
                return True

            await eventually(lambda: stored(5), timeout=30, what="the records counted")
            source.then()
            if held:  # the log now starts past the stored offset: held, not skipped
                await eventually(ingest.held, timeout=30, what="partition 0 held")
                assert await store.offset(0) == 5
            else:  # offsets the log skips: stored
                await eventually(lambda: stored(8), timeout=30, what="the offset past them")
                assert ingest.held() is None
        finally:
            ingest.stop()
            await asyncio.wait_for(task, 30)
