"""A cell's HyperLogLog of units is made dense once it holds some hundreds: the count stays."""

from __future__ import annotations

from typing import Any

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.client import RedisClient
from controller.core.stats.folding import PartitionDelta, Seen, fold
from controller.settings import RedisSettings
from tests.integration.stores.test_store import decoded

pytestmark = pytest.mark.integration


def exposures(units: range, first_id: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "exposure",
            "v": 1,
            "id": f"e{first_id + i}",
            "ts": 1_763_780_000_000 + first_id + i,
            "flag": "flag-0",
            "unit": f"u{unit}",
            "arm": "treatment",
            "flag_version": 1,
        }
        for i, unit in enumerate(units)
    ]


def folded(next_offset: int, events: list[dict[str, Any]]) -> PartitionDelta:
    delta = PartitionDelta(partition=0, next_offset=next_offset, seen=Seen.skipping(frozenset()))
    fold([decoded(e) for e in events], delta.cells, seen=delta.seen)
    return delta


@pytest.mark.parametrize(
    ("batches", "dense"),
    [
        ([range(0, 40)], False),  # a few units: it stays sparse
        ([range(0, 600)], True),  # made dense before the first add
        ([range(0, 100), range(50, 800)], True),  # a sparse one merged into a dense one
        ([range(0, 100), range(50, 800), range(0, 800)], True),  # units seen before add none
    ],
)
async def test_units_count_alike_sparse_or_dense(
    store_client: RedisClient, redis_namespace: str, batches: list[range], dense: bool
) -> None:
    store = RedisAggregateStore(
        store_client, settings=RedisSettings(key_prefix=redis_namespace), topic="events"
    )
    claim, offset, first_id = await store.claim(0), 0, 0
    for units in batches:
        events = exposures(units, first_id)
        first_id += len(events)
        delta = folded(offset + len(events), events)
        await store.flush(delta, epoch=claim.epoch, expected_offset=offset or None)
        offset = delta.next_offset
    hll = f"{{{redis_namespace}:events:0}}:u:flag-0:1:treatment"
    distinct = {f"u{u}" for units in batches for u in units}
    # Redis's own estimate of the same units added one by one: the figure to expect exactly
    reference = f"{{{redis_namespace}:events:0}}:reference"
    await store_client.pfadd(reference, *distinct)
    assert await store_client.pfcount(hll) == await store_client.pfcount(reference)
    assert abs(await store_client.pfcount(hll) - len(distinct)) <= 0.03 * len(distinct)
    assert (await store_client.getrange(hll, 4, 4) == b"\x00") is dense
