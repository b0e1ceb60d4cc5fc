"""Another source's partitions in the aggregate store (the OpenTelemetry topics),
against a real Redis, one node and a 3-master cluster.

Their offsets and fences are their own, namespaced by the source topic, so they never
touch the events topic's partitions 0..n; what they count lands in the events topic's
partition -1, one slot for all of them, which a gate reads as one more partition.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from redis.crc import key_slot

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.cells.layout import SOURCES_PARTITION
from controller.adapters.redis.client import RedisClient
from controller.core.common.errors import DuplicateEvents, FencedError
from controller.core.stats.folding import PartitionDelta, Seen, fold
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.support.reference import (
    assert_arm_equal,
    encode,
    expected_arm,
    make_event,
    reference_fold,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def client(store_client: RedisClient) -> RedisClient:
    """The single Redis node, then the Redis Cluster (``store_client``)."""
    return store_client


def stores(
    client: RedisClient, prefix: str
) -> tuple[RedisAggregateStore, RedisAggregateStore, RedisAggregateStore]:
    """The events topic's store, and the stores of two source topics feeding it."""
    settings = RedisSettings(key_prefix=prefix)
    events = RedisAggregateStore(client, settings=settings, topic="events")
    spans = RedisAggregateStore(client, settings=settings, topic="events", source="otlp_spans")
    logs = RedisAggregateStore(client, settings=settings, topic="events", source="otlp_logs")
    return events, spans, logs


def decoded(event: dict[str, Any]) -> InEvent:
    result = decode_event(encode(event), max_bytes=65536)
    assert not isinstance(result, Rejection), result
    return result


def delta_of(partition: int, next_offset: int, events: list[dict[str, Any]]) -> PartitionDelta:
    delta = PartitionDelta(partition=partition, next_offset=next_offset)
    fold([decoded(e) for e in events], delta.cells, seen=delta.seen)
    return delta


async def test_source_partitions_keep_their_own_offsets_and_fences(
    client: RedisClient, redis_namespace: str
) -> None:
    events, spans, logs = stores(client, redis_namespace)
    rng = random.Random(3)
    batch = [make_event(rng, i, flags=2, units=50) for i in range(120)]
    for event in batch[:40]:  # units of the events topic are not those of the sources
        event["unit"] = f"events-{event['unit']}"
    # Partition 0 of all three topics: three claims, three offsets, no collision.
    claims = [await s.claim(0) for s in (events, spans, logs)]
    assert [c.epoch for c in claims] == [1, 1, 1]
    for store, (start, end), claim in zip(
        (events, spans, logs), ((0, 40), (40, 80), (80, 120)), claims, strict=True
    ):
        delta = delta_of(0, 7, batch[start:end])
        outcome = await store.flush(delta, epoch=claim.epoch, expected_offset=None)
        assert outcome is FlushOutcome.APPLIED
    assert [await s.offset(0) for s in (events, spans, logs)] == [7, 7, 7]
    # A new owner of the spans topic's partition 0 fences the old one there only.
    again = await spans.claim(0)
    late = delta_of(0, 9, batch[40:41])
    with pytest.raises(FencedError):
        await spans.flush(late, epoch=claims[1].epoch, expected_offset=7)
    moved = await events.flush(delta_of(0, 9, []), epoch=claims[0].epoch, expected_offset=7)
    assert moved is FlushOutcome.APPLIED
    assert again.offset == 7
    # Gates read the events topic's partitions and -1 together: every event, exactly.
    assert await events.partitions() == [SOURCES_PARTITION, 0]
    cells = reference_fold(batch)
    for flag in {e["flag"] for e in batch}:
        got = await events.read(flag, {1, 2, 3})
        for arm, agg in (("treatment", got.treatment), ("control", got.control)):
            want, _ = expected_arm(cells, flag, {1, 2, 3}, arm)
            assert_arm_equal(agg, want, where=f"{flag}.{arm}")


async def test_an_id_counted_on_one_source_partition_is_refused_on_another(
    client: RedisClient, redis_namespace: str
) -> None:
    """A Collector that sends a batch again may put it on another partition: counted once."""
    _, spans, logs = stores(client, redis_namespace)
    rng = random.Random(5)
    batch = [make_event(rng, i, units=10) for i in range(30)]
    first, other, logs_claim = await spans.claim(0), await spans.claim(3), await logs.claim(1)
    outcome = await spans.flush(delta_of(0, 1, batch), epoch=first.epoch, expected_offset=None)
    assert outcome is FlushOutcome.APPLIED
    with pytest.raises(DuplicateEvents) as on_other:
        await spans.flush(delta_of(3, 1, batch[:10]), epoch=other.epoch, expected_offset=None)
    assert on_other.value.ids == {e["id"] for e in batch[:10]}
    with pytest.raises(DuplicateEvents):
        await logs.flush(delta_of(1, 1, batch[20:]), epoch=logs_claim.epoch, expected_offset=None)
    # Folded again without them, the copy only moves the offset on.
    known = frozenset(on_other.value.ids)
    skipped = PartitionDelta(partition=3, next_offset=1, seen=Seen.skipping(known))
    fold([decoded(e) for e in batch[:10]], skipped.cells, seen=skipped.seen)
    assert skipped.events == 0
    outcome = await spans.flush(skipped, epoch=other.epoch, expected_offset=None)
    assert outcome is FlushOutcome.APPLIED
    assert await spans.offset(3) == 1


async def test_a_source_partition_flush_touches_one_slot(
    client: RedisClient, redis_namespace: str
) -> None:
    """Every key a source partition's flush writes shares the slot of partition -1."""
    events, spans, _ = stores(client, redis_namespace)
    claim = await spans.claim(5)
    rng = random.Random(9)
    delta = delta_of(5, 3, [make_event(rng, i) for i in range(20)])
    outcome = await spans.flush(delta, epoch=claim.epoch, expected_offset=None)
    assert outcome is FlushOutcome.APPLIED
    keys = [k.decode() async for k in client.scan_iter(match=f"*{redis_namespace}*")]
    written = [k for k in keys if "partitions" not in k]
    assert written
    assert {key_slot(k.encode()) for k in written} == {
        key_slot(f"{{{redis_namespace}:events:-1}}".encode())
    }
    assert any(":src:otlp_spans:5:meta" in k for k in written)
    assert not any(k.startswith(f"{{{redis_namespace}:events:5}}") for k in keys)
    assert await events.offset(5) is None
