"""A flush that Redis would refuse writes nothing: the script checks before its first write.

Redis does not roll back a Lua script that fails half-way. These tests damage
the store the way an operator or another program could (a key of the wrong
type, a sum at the edge of a double) and show that the flush is refused
whole: no increment, no offset, no flag marked dirty. Then, through the real
daemon, that the refusal is confined to the events behind the damaged key.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.core.common.errors import FlushRefused
from controller.core.stats.aggregates import watched_members
from controller.core.stats.folding import PartitionDelta, fold
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.integration.rig import Rig, flags_of
from tests.support.reference import encode, make_event, partition_of

pytestmark = pytest.mark.integration


def _store(client: aioredis.Redis, prefix: str) -> RedisAggregateStore:
    return RedisAggregateStore(client, settings=RedisSettings(key_prefix=prefix), topic="events")


def _delta(events: list[dict[str, Any]], *, next_offset: int) -> PartitionDelta:
    decoded: list[InEvent] = []
    for event in events:
        result = decode_event(encode(event), max_bytes=65536)
        assert not isinstance(result, Rejection), result
        decoded.append(result)
    delta = PartitionDelta(partition=0, next_offset=next_offset)
    fold(decoded, delta.cells)
    return delta


def _conversion(flag: str, value: float, i: int) -> dict[str, Any]:
    return {
        "type": "conversion",
        "v": 1,
        "id": f"c{i}",
        "ts": 1_763_780_000_000,
        "flag": flag,
        "unit": f"u{i}",
        "arm": "treatment",
        "flag_version": 1,
        "value": value,
    }


async def _snapshot(client: aioredis.Redis, prefix: str) -> dict[bytes, Any]:
    """Every key of the namespace with its type and contents."""
    out: dict[bytes, Any] = {}
    async for key in client.scan_iter(match=f"*{prefix}*"):
        found = await client.type(key)
        kind = found.decode() if isinstance(found, bytes) else found
        if kind == "hash":
            out[key] = await client.hgetall(key)
        elif kind == "set":
            out[key] = await client.smembers(key)
        else:
            out[key] = (kind, await client.get(key) if kind == "string" else None)
    return out


OWN_COUNTS = frozenset({"cv_sum", "counter"})
"""Damage to the counts the owner's copy of a cell sets (docs/architecture.md, "The owner's
copy of its cells")."""


@pytest.mark.parametrize(
    ("damage", "per_cell"),
    [
        # A float sum that one more valid value would push past a double.
        ("cv_sum", True),
        # The aggregate hash replaced by a string.
        ("agg_type", True),
        # The unit HyperLogLog replaced by a plain string.
        ("hll", True),
        # A counter that is no longer an integer.
        ("counter", True),
        # The other arm's set of watched units (units seen in both arms) replaced by a string.
        ("watched_set", True),
        # The count of watched units no longer an integer.
        ("watched_count", True),
        # The cell's string of unit bucket lanes' low words replaced by a hash.
        ("lanes", True),
        # The string of their high words, which a wrap would write to, replaced by a list.
        ("high_lanes", True),
        # The partition's dirty set replaced by a list: no cell is to blame.
        ("dirty", False),
    ],
)
async def test_a_refused_flush_writes_nothing(
    redis_client: aioredis.Redis, redis_namespace: str, damage: str, per_cell: bool
) -> None:
    store = _store(redis_client, redis_namespace)
    claim = await store.claim(0)
    tag = f"{{{redis_namespace}:events:0}}"
    agg, hll = f"{tag}:a:bad:1:treatment", f"{tag}:u:bad:1:treatment"
    first = _delta([_conversion("bad", 1.0, 0), _conversion("ok", 2.0, 1)], next_offset=2)
    assert await store.flush(first, epoch=claim.epoch, expected_offset=None) is FlushOutcome.APPLIED
    if damage == "cv_sum":
        await redis_client.hset(agg, "cv_sum", "1.7e308")
    elif damage == "agg_type":
        await redis_client.delete(agg)
        await redis_client.set(agg, "not a hash")
    elif damage == "hll":
        await redis_client.delete(hll)
        await redis_client.set(hll, "not an hll")
    elif damage == "counter":
        await redis_client.hset(agg, "conv", "1.5")
    elif damage == "watched_set":
        await redis_client.set(f"{tag}:w:bad:1:control", "not a set")
    elif damage == "watched_count":
        await redis_client.hset(agg, "wu", "1.5")
    elif damage == "lanes":
        await redis_client.delete(f"{tag}:n:bad:1:treatment")
        await redis_client.hset(f"{tag}:n:bad:1:treatment", "x", "1")
    elif damage == "high_lanes":
        await redis_client.rpush(f"{tag}:h:bad:1:treatment", "x")
    else:
        await redis_client.delete(f"{tag}:dirty")
        await redis_client.rpush(f"{tag}:dirty", "x")
    if damage in OWN_COUNTS:
        # The owner's copy of the cell would write over the damage: a claim (a restart, a
        # rebalance) lets it go, and the next flush reads the cell
        claim = await store.claim(0)
    before = await _snapshot(redis_client, redis_namespace)

    # u2 is drawn into the sample of watched units, so the flush reads its arm's sets.
    assert len(watched_members(["u2"])) == 1
    second = _delta([_conversion("ok", 3.0, 3), _conversion("bad", 1e9, 2)], next_offset=4)
    with pytest.raises(FlushRefused) as refused:
        await store.flush(second, epoch=claim.epoch, expected_offset=2)

    assert refused.value.per_cell is per_cell
    assert refused.value.retriable is not per_cell
    assert await _snapshot(redis_client, redis_namespace) == before
    assert await store.offset(0) == 2


async def test_an_edit_to_the_counts_an_owner_holds_is_written_over_by_what_it_counted(
    redis_client: aioredis.Redis, redis_namespace: str
) -> None:
    store = _store(redis_client, redis_namespace)
    claim = await store.claim(0)
    agg = f"{{{redis_namespace}:events:0}}:a:bad:1:treatment"
    first = _delta([_conversion("bad", 1.0, 0)], next_offset=1)
    assert await store.flush(first, epoch=claim.epoch, expected_offset=None) is FlushOutcome.APPLIED
    await redis_client.hset(agg, mapping={"cv_sum": "1.7e308", "conv": "1.5"})

    second = _delta([_conversion("bad", 2.0, 1)], next_offset=2)
    assert await store.flush(second, epoch=claim.epoch, expected_offset=1) is FlushOutcome.APPLIED
    got = await redis_client.hmget(agg, ["cv_sum", "conv"])
    assert got == [b"3", b"2"]


async def test_the_daemon_dead_letters_only_the_events_behind_a_damaged_key(
    rig: Rig, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    rng = random.Random(11)
    good = [make_event(rng, i) for i in range(2000)]
    bad = [_conversion("damaged", 1.0, 10_000 + i) for i in range(30)]
    for i, event in enumerate(bad):
        event["unit"] = f"damaged-{i}"
    # The damaged cell's aggregate hash, on every partition, is a string.
    for p in range(4):
        await redis_client.set(f"{{{rig.prefix}:{rig.events}:{p}}}:a:damaged:1:treatment", "x")
    stream: list[tuple[bytes | None, bytes | None]] = [
        (e["unit"].encode(), encode(e)) for e in good
    ]
    for event in bad:
        stream.insert(rng.randrange(len(stream)), (event["unit"].encode(), encode(event)))

    with rig.daemon(tmp_path) as daemon:
        await rig.produce(stream)
        counted = await rig.wait_counted(flags_of(good), len(good))
        letters = await rig.dead_letters(len(bad))
        assert daemon.running, daemon.log_text()[-3000:]
    assert counted == len(good)
    await rig.assert_exact(good)
    reasons = {dict(m.headers)["rc.reason"] for m in letters}
    assert reasons == {b"store_refused"}
    assert {m.key for m in letters} == {e["unit"].encode() for e in bad}
    assert {partition_of(e["unit"], 4) for e in bad} == set(range(4))
