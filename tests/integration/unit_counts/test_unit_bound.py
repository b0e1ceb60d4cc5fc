"""The most units a cell counts one by one, on one node and on a 3-master cluster.

An app that sends a new unit id with every request (a request id as the unit) would grow a
cell's hashes by a unit a request. Past ``redis.max_units_per_cell`` a new unit is not
written: its requests and failures go to the cell's ``over`` and ``over_e``, a read takes
``over`` as what a unit left out may have sent, and the hashes stay as they are.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.cells.unit_counts import FAILURES_MARK, unit_field, unit_shard
from controller.adapters.redis.client import RedisClient
from controller.core.stats import Heaviest, UnitCount, merged
from controller.core.stats.folding import PartitionDelta, fold
from controller.core.stats.heaviest.caps import effective_cap
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.integration.stores.test_store import decoded
from tests.integration.unit_counts.test_unit_counts import PARTITIONS, by_unit, flush_in, request
from tests.support.reference import assert_heaviest

pytestmark = pytest.mark.integration
MOST = 50
ARMS = ("treatment", "control")


def one_request_each(seed: int, prefix: str, units: int) -> list[dict[str, Any]]:
    """``units`` units of one request each (a request id sent as the unit), a tenth failing."""
    rng = random.Random(seed)
    return [
        request(f"e-{prefix}-{i}-0", f"{prefix}-{i}", rng.choice(ARMS), error=rng.random() < 0.1)
        for i in range(units)
    ]


def heavy(unit: str, n: int, every: int) -> list[dict[str, Any]]:
    """``n`` treatment requests of ``unit``, one in ``every`` failing."""
    return [request(f"e-{unit}-{i}", unit, "treatment", error=i % every == 0) for i in range(n)]


def cell_key(namespace: str, unit: str, arm: str) -> str:
    return f"{{{namespace}:events:{by_unit(0, {'unit': unit})}}}:k:f:1:{arm}"


def every_unit(events: list[dict[str, Any]], arm: str) -> Heaviest:
    requests = Counter(e["unit"] for e in events if e["arm"] == arm)
    errors = Counter(e["unit"] for e in events if e["arm"] == arm and e["error"])
    counts = tuple(UnitCount(u, n, errors[u]) for u, n in requests.items())
    return merged([Heaviest(counts)], keep=len(counts))


async def kept_and_over(
    client: RedisClient, namespace: str, events: list[dict[str, Any]]
) -> dict[str, tuple[set[str], int, int]]:
    """Each cell's units its hashes hold (each checked exact), and its over and over_e."""
    requests = Counter((e["unit"], e["arm"]) for e in events)
    errors = Counter((e["unit"], e["arm"]) for e in events if e["error"])
    cells: dict[str, list[str]] = {}
    for unit, arm in requests:
        cells.setdefault(cell_key(namespace, unit, arm), []).append(f"{arm}/{unit}")
    found = {}
    for cell, units in cells.items():
        state = await client.hmget(cell, "level", "split", "units", "over", "over_e")
        level, split, counted, over, over_e = (int(x or 0) for x in state)
        kept = set()
        for named in units:
            arm, unit = named.split("/", 1)
            field = unit_field(unit)
            shard = f"{cell}:{unit_shard(field, level, split)}"
            n = await client.hget(shard, field)
            if n is not None:
                kept.add(unit)
                assert int(n) == requests[(unit, arm)], unit
                failed = int(await client.hget(shard, field + FAILURES_MARK) or 0)
                assert failed == errors[(unit, arm)], unit
        assert counted == len(kept) == min(MOST, len(units)), cell
        arm = units[0].split("/", 1)[0]
        left = [u.split("/", 1)[1] for u in units if u.split("/", 1)[1] not in kept]
        assert over == sum(requests[(u, arm)] for u in left), cell
        assert over_e == sum(errors[(u, arm)] for u in left), cell
        found[cell] = (kept, over, over_e)
    return found


async def footprint(client: RedisClient, cells: list[str]) -> tuple[dict[str, Any], int, int]:
    """The cells' hashes and heaviest units as stored, their bytes, and their state's bytes."""
    stored: dict[str, Any] = {}
    size = state_size = 0
    for cell in cells:
        level, split = (int(x or 0) for x in await client.hmget(cell, "level", "split"))
        top = cell.replace(":k:", ":t:")
        stored[top] = await client.zrange(top, 0, -1, withscores=True)
        size += int(await client.memory_usage(top, samples=0) or 0)
        for shard in range(2**level + split):
            key = f"{cell}:{shard}"
            stored[key] = await client.hgetall(key)
            size += int(await client.memory_usage(key, samples=0) or 0)
        state_size += int(await client.memory_usage(cell, samples=0) or 0)
    return stored, size, state_size


async def test_units_past_the_most_are_counted_in_over_and_the_hashes_stop_growing(
    store_client: RedisClient, redis_namespace: str
) -> None:
    settings = RedisSettings(key_prefix=redis_namespace, max_units_per_cell=MOST)
    store = RedisAggregateStore(store_client, settings=settings, topic="events")
    # heavy-0 first, so kept; then 600 units of one request each, ~100 a cell.
    first = heavy("heavy-0", 30, every=5) + one_request_each(1, "r", 600)
    await flush_in(store, first, by_unit, batches=4)
    # Every cell is full by now: late-heavy, in a flush of its own, is past the most.
    late = heavy("late-heavy", 40, every=4)
    await flush_in(store, late, by_unit, batches=1)
    events = first + late

    cells = await kept_and_over(store_client, redis_namespace, events)
    assert len(cells) == 2 * PARTITIONS
    late_cell = cell_key(redis_namespace, "late-heavy", "treatment")
    kept, over, over_e = cells[late_cell]
    assert "late-heavy" not in kept
    assert over >= 40
    assert over_e >= 10
    assert "heavy-0" in cells[cell_key(redis_namespace, "heavy-0", "treatment")][0]

    got = await store.read("f", [1])
    for arm in ARMS:
        heaviest = getattr(got, arm).heaviest
        assert_heaviest(heaviest, every_unit(events, arm), where=arm)
        cells_over = sum(o for c, (_, o, _) in cells.items() if c.endswith(f":{arm}"))
        assert heaviest.unkept_requests == cells_over > 0, arm
    treatment = got.treatment.heaviest
    assert treatment.units[0] == UnitCount("heavy-0", 30, 6)
    assert "late-heavy" not in {u.unit for u in treatment.units}
    assert treatment.unlisted_at_most >= 40
    assert effective_cap(1, got) >= 40  # a cap leaves no room for late-heavy to escape it

    # A replay of a partition's batches from the start adds nothing.
    p = by_unit(0, {"unit": "late-heavy"})
    claim = await store.claim(p)
    delta = PartitionDelta(partition=p, next_offset=1)
    fold([decoded(e) for e in events if by_unit(0, e) == p], delta.cells)
    outcome = await store.flush(delta, epoch=claim.epoch, expected_offset=None)
    assert outcome is FlushOutcome.REPLAYED
    assert await kept_and_over(store_client, redis_namespace, events) == cells

    # 1,200 more units, each new: the cells' hashes and lists stay as they were, byte for byte.
    before, size, state_size = await footprint(store_client, sorted(cells))
    more = one_request_each(2, "more", 1200)
    await flush_in(store, more, by_unit, batches=3)
    after, size_after, state_after = await footprint(store_client, sorted(cells))
    assert after == before
    assert size_after == size
    assert state_after - state_size <= 16  # over and over_e: a few more digits
    grown = await kept_and_over(store_client, redis_namespace, events + more)
    assert sum(o for _, o, _ in grown.values()) - sum(o for _, o, _ in cells.values()) == 1200
