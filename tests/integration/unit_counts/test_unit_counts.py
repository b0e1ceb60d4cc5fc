"""Each unit's own counts, on one node and on a 3-master cluster: exact, once, small.

The flush keeps every unit's requests and failed requests per cell in small hashes and the
cell's heaviest units by id beside them (``units.lua``); a read merges the partitions'
heaviest. Checked against counts made here from the events themselves.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.cells.unit_counts import (
    FAILURES_MARK,
    SHARD_LOAD,
    unit_field,
    unit_shard,
)
from controller.adapters.redis.client import RedisClient
from controller.core.stats import HEAVIEST_KEPT, UnitCount
from controller.core.stats.folding import PartitionDelta, fold
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.integration.stores.test_store import decoded

pytestmark = pytest.mark.integration
PARTITIONS = 3


def store_for(client: RedisClient, prefix: str) -> RedisAggregateStore:
    return RedisAggregateStore(client, settings=RedisSettings(key_prefix=prefix), topic="events")


def traffic(seed: int, n: int, units: int = 300) -> list[dict[str, Any]]:
    """Requests of ``units`` units in two arms; unit heavy-0 sends a third of them, a fifth
    failing."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        heavy = rng.random() < 1 / 3
        unit = "heavy-0" if heavy else f"u-{rng.randrange(units)}"
        arm = "treatment" if heavy or rng.random() < 0.5 else "control"
        out.append(request(f"e{i}", unit, arm, error=rng.random() < (0.2 if heavy else 0.02)))
    return out


def request(event_id: str, unit: str, arm: str, *, error: bool = False) -> dict[str, Any]:
    """One request of flag ``f`` (version 1)."""
    return {
        "type": "request",
        "v": 1,
        "id": event_id,
        "ts": 1_700_000_000_000,
        "flag": "f",
        "flag_version": 1,
        "unit": unit,
        "arm": arm,
        "latency_ms": 5.0,
        "error": error,
    }


def expected(events: list[dict[str, Any]], arm: str) -> tuple[UnitCount, ...]:
    requests = Counter(e["unit"] for e in events if e["arm"] == arm)
    errors = Counter(e["unit"] for e in events if e["arm"] == arm and e["error"])
    ranked = sorted(requests.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(UnitCount(u, n, errors[u]) for u, n in ranked[:HEAVIEST_KEPT])


async def flush_in(
    store: RedisAggregateStore, events: list[dict[str, Any]], place: Any, batches: int
) -> None:
    """Each partition's events (``place(i, event)`` says which) in ``batches`` flushes."""
    for p in range(PARTITIONS):
        mine = [e for i, e in enumerate(events) if place(i, e) == p]
        claim = await store.claim(p)
        offset = claim.offset
        step = max(1, -(-len(mine) // batches))
        for start in range(0, len(mine), step):
            delta = PartitionDelta(partition=p, next_offset=(offset or 0) + 1)
            fold([decoded(e) for e in mine[start : start + step]], delta.cells)
            await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
            offset = delta.next_offset


def by_unit(_i: int, event: dict[str, Any]) -> int:
    unit: str = event["unit"]
    return sum(unit.encode()) % PARTITIONS


def by_event(i: int, _event: dict[str, Any]) -> int:
    return i % PARTITIONS


async def test_units_keyed_to_one_partition_are_listed_exactly(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    events = traffic(1, 3000)
    await flush_in(store, events, by_unit, batches=7)
    got = await store.read("f", [1])
    for arm in ("treatment", "control"):
        heaviest = getattr(got, arm).heaviest
        assert heaviest.units == expected(events, arm), arm
    top = got.treatment.heaviest.units[0]
    assert top.unit == "heavy-0"
    assert top.requests / got.treatment.requests > 0.4
    assert 0 < top.errors < top.requests


async def test_a_unit_spread_over_partitions_is_summed_and_its_bound_said(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    events = traffic(2, 3000)
    await flush_in(store, events, by_event, batches=5)
    got = (await store.read("f", [1])).treatment.heaviest
    assert got.units[0] == expected(events, "treatment")[0]
    # Each partition lists its 16 heaviest of ~150 units: a unit left out of one sent it at
    # most that list's last count, and the read says so.
    assert got.unlisted_at_most > 0


async def test_every_units_count_is_in_its_small_hash_and_a_replay_adds_nothing(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    events = traffic(3, 9000, units=3000)  # ~500 units a cell: its hashes split 12 times
    await flush_in(store, events, by_unit, batches=3)
    # The same batches again, from the start: every flush a replay.
    for p in range(PARTITIONS):
        mine = [e for i, e in enumerate(events) if by_unit(i, e) == p]
        claim = await store.claim(p)
        delta = PartitionDelta(partition=p, next_offset=1)
        fold([decoded(e) for e in mine], delta.cells)
        outcome = await store.flush(delta, epoch=claim.epoch, expected_offset=None)
        assert outcome is FlushOutcome.REPLAYED
    requests = Counter((e["unit"], e["arm"]) for e in events)
    errors = Counter((e["unit"], e["arm"]) for e in events if e["error"])
    encodings = set()
    for (unit, arm), n in requests.items():
        p = by_unit(0, {"unit": unit})
        field = unit_field(unit)
        cell = f"{{{redis_namespace}:events:{p}}}:k:f:1:{arm}"
        level, split, counted = (
            int(x or 0) for x in await store_client.hmget(cell, "level", "split", "units")
        )
        assert counted == sum(1 for u, a in requests if a == arm and by_unit(0, {"unit": u}) == p)
        key = f"{cell}:{unit_shard(field, level, split)}"
        assert int(await store_client.hget(key, field) or 0) == n, unit
        failed = int(await store_client.hget(key, field + FAILURES_MARK) or 0)
        assert failed == errors[(unit, arm)], unit
        encodings.add(await store_client.object("encoding", key))
        assert 2**level + split == -(-counted // SHARD_LOAD)  # the hashes grew with the units
    assert encodings == {b"listpack"}
    # Each cell's first flush adds its every unit to its heaviest, ~170 here: cut as they
    # come, the sorted set stays a listpack too, and holds its heaviest.
    for p in range(PARTITIONS):
        for arm in ("treatment", "control"):
            top = f"{{{redis_namespace}:events:{p}}}:t:f:1:{arm}"
            assert await store_client.zcard(top) == HEAVIEST_KEPT
            assert await store_client.object("encoding", top) == b"listpack"


async def test_units_tied_at_the_cut_are_listed_in_redis_order_whatever_their_number(
    store_client: RedisClient, redis_namespace: str
) -> None:
    # Two flushes of one cell, each with far more units entering its heaviest than it keeps
    # and most of them tied: the set is what adding them one by one leaves, Redis's order
    # (score, then the member's bytes) deciding the ties, and it stays a listpack.
    store = store_for(store_client, redis_namespace)
    rng = random.Random(7)
    flushes = [
        [f"u-{rng.randrange(400)}" for _ in range(600)],
        [f"u-{rng.randrange(400)}" for _ in range(300)],
    ]
    claim = await store.claim(0)
    top = f"{{{redis_namespace}:events:0}}:t:f:1:treatment"
    listed: dict[bytes, int] = {}
    totals: Counter[str] = Counter()
    offset = claim.offset
    for units in flushes:
        events = [request(f"e{offset}-{i}", u, "treatment") for i, u in enumerate(units)]
        delta = PartitionDelta(partition=0, next_offset=(offset or 0) + 1)
        fold([decoded(e) for e in events], delta.cells)
        await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
        offset = delta.next_offset
        floor = min(listed.values()) if len(listed) >= HEAVIEST_KEPT else -1
        totals.update(units)
        for unit in set(units):
            if totals[unit] > floor:
                listed[unit_field(unit) + unit.encode()] = totals[unit]
        kept = sorted(listed.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        listed = dict(kept[:HEAVIEST_KEPT])
        got: Any = await store_client.zrange(top, 0, -1, withscores=True)
        assert {member: int(score) for member, score in got} == listed
        assert await store_client.object("encoding", top) == b"listpack"
