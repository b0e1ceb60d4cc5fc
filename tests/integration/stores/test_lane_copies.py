"""The owner's copies of its cells against a real Redis, one node and a 3-master cluster:
what a store writes from its copies is byte for byte what the script's increments write
(strings of lanes, counts and float sums as text, named conversions beside them), a copy
of keys gone from Redis is never written back, and a copy makes a flush take no
``BITFIELD``."""

from __future__ import annotations

import random
from typing import Any

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.client import RedisClient, as_text
from controller.core.stats.folding import PartitionDelta, fold
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.support.reference import encode, make_event

pytestmark = pytest.mark.integration
PARTITION = 0
BIG = 3 * 0x10000 + 17
"""A count that wraps a low word three times."""


def decoded(event: dict[str, Any]) -> InEvent:
    result = decode_event(encode(event), max_bytes=65536)
    assert not isinstance(result, Rejection), result
    return result


def batches(seed: int, sizes: list[int]) -> list[list[InEvent]]:
    rng = random.Random(seed)
    names = ("checkout_completed", "signup")
    events = [make_event(rng, i, flags=3, versions=2, names=names) for i in range(sum(sizes))]
    out, at = [], 0
    for size in sizes:
        out.append([decoded(e) for e in events[at : at + size]])
        at += size
    return out


def delta_of(batch: list[InEvent], next_offset: int, *, wraps: bool) -> PartitionDelta:
    """The batch folded; with ``wraps``, one count of each cell made large enough to wrap."""
    delta = PartitionDelta(partition=PARTITION, next_offset=next_offset)
    fold(batch, delta.cells)
    if wraps:
        for cell in delta.cells.values():
            slot = next(iter(cell.bucket_counts()))
            cell.counts[slot] = cell.counts.get(slot, 0) + BIG
    return delta


def store_for(client: RedisClient, prefix: str, **options: Any) -> RedisAggregateStore:
    settings = RedisSettings(key_prefix=prefix)
    return RedisAggregateStore(client, settings=settings, topic="events", **options)


async def flush_all(store: RedisAggregateStore, deltas: list[PartitionDelta]) -> None:
    claim = await store.claim(PARTITION)
    offset = None
    for delta in deltas:
        outcome = await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
        assert outcome is FlushOutcome.APPLIED
        offset = delta.next_offset


async def stored(client: RedisClient, prefix: str) -> dict[str, Any]:
    """Every cell's hash and strings of lanes, by key with the prefix taken off."""
    out: dict[str, Any] = {}
    async for key in client.scan_iter(match=f"*{prefix}*"):
        name = as_text(key).replace(prefix, "")
        kind = as_text(await client.type(key))
        if kind == "hash" and ":a:" in name:
            out[name] = await client.hgetall(key)
        elif kind == "string":
            out[name] = await client.get(key)
    return out


def deltas(seed: int, sizes: list[int], wraps: list[bool]) -> list[PartitionDelta]:
    out, offset = [], 0
    for batch, wrap in zip(batches(seed, sizes), wraps, strict=True):
        offset += len(batch)
        out.append(delta_of(batch, offset, wraps=wrap))
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_writes_from_copies_leave_what_bitfield_leaves(
    store_client: RedisClient, redis_namespace: str, seed: int
) -> None:
    sizes = [40, 1, 200, 7, 300, 60, 500, 3]
    wraps = [False, False, True, False, True, False, False, False]
    copied, direct = f"{redis_namespace}c", f"{redis_namespace}d"
    await flush_all(store_for(store_client, copied), deltas(seed, sizes, wraps))
    # A budget of nothing holds no copy: every flush goes by BITFIELD
    await flush_all(store_for(store_client, direct, copy_budget=0), deltas(seed, sizes, wraps))
    by_copy, by_bitfield = await stored(store_client, copied), await stored(store_client, direct)
    assert any(":h:" in key for key in by_copy), "some low word wrapped"
    # The same keys, strings and hashes, but for the version the copies' writes counted
    versions = [fields.pop(b"lv") for key, fields in by_copy.items() if ":a:" in key]
    assert versions
    assert all(b"lv" not in fields for key, fields in by_bitfield.items() if ":a:" in key)
    assert by_copy == by_bitfield


async def test_a_copy_of_keys_gone_from_redis_is_not_written_back(
    store_client: RedisClient, redis_namespace: str
) -> None:
    first, second = deltas(3, [50, 50], [True, False])
    owner, fresh = f"{redis_namespace}o", f"{redis_namespace}f"
    store = store_for(store_client, owner)
    claim = await store.claim(PARTITION)
    await store.flush(first, epoch=claim.epoch, expected_offset=None)
    # As if the cells' keys had expired: the hashes and the strings of lanes go
    async for key in store_client.scan_iter(match=f"*{owner}*"):
        if any(part in as_text(key) for part in (":a:", ":n:", ":h:")):
            await store_client.delete(key)
    outcome = await store.flush(second, epoch=claim.epoch, expected_offset=first.next_offset)
    assert outcome is FlushOutcome.APPLIED

    _, only_second = deltas(3, [50, 50], [True, False])
    await flush_all(store_for(store_client, fresh), [only_second])
    got, want = await stored(store_client, owner), await stored(store_client, fresh)
    assert lanes_of(got), "the second batch wrote lanes"
    assert lanes_of(got) == lanes_of(want)


def lanes_of(keys: dict[str, Any]) -> dict[str, bytes]:
    return {k: v for k, v in keys.items() if ":n:" in k or ":h:" in k}


async def test_a_cell_held_in_copy_is_flushed_without_bitfield(
    redis_client: RedisClient, redis_namespace: str
) -> None:
    first, second = deltas(4, [80, 80], [False, True])
    store = store_for(redis_client, redis_namespace)
    claim = await store.claim(PARTITION)

    async def calls(command: str) -> int:
        stats = await redis_client.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    before = await calls("bitfield")
    await store.flush(first, epoch=claim.epoch, expected_offset=None)
    learned = await calls("bitfield")
    assert learned > before, "a cell without a copy goes by BITFIELD"
    setranges = await calls("setrange")
    # The second batch's cells were all in the first (three flags, two versions, two arms)
    assert set(second.cells) <= set(first.cells)
    await store.flush(second, epoch=claim.epoch, expected_offset=first.next_offset)
    assert await calls("bitfield") == learned
    assert await calls("setrange") > setranges
