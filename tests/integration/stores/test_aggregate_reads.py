"""The gates' aggregate read, on one node and on a 3-master cluster: what it sums, to
the last bit, in how many round trips, and what it does when the partitions change."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from controller.adapters.redis import HOLDOUT_CELLS, HoldoutReads, aggregate_reads
from controller.adapters.redis.aggregate_reads import NO_BUCKETS
from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.cells.layout import LANE_KINDS
from controller.adapters.redis.cells.unit_counts import FAILURES_MARK, unit_shard
from controller.adapters.redis.client import RedisClient
from controller.core.common.errors import StoreError
from controller.core.stats import HEAVIEST_KEPT, Heaviest, merged, partition_list
from controller.core.stats.aggregates import (
    BOTH_FIELD,
    WATCHED_FIELD,
    ArmAggregate,
    CellDelta,
    FlagAggregates,
)
from controller.core.stats.folding import PartitionDelta, fold
from controller.core.stats.units import KIND_COUNT, REQUESTS, UNIT_BUCKETS
from controller.settings import RedisSettings
from tests.integration.rig import drop_keys
from tests.integration.stores.test_store import decoded
from tests.support.reference import make_event, partition_of

pytestmark = pytest.mark.integration
PARTITIONS = 4
FLAGS = ("flag-0", "flag-1", "flag-2")
ARMS = ("treatment", "control")


@pytest.fixture
def client(store_client: RedisClient) -> RedisClient:
    """The single Redis node, then the Redis Cluster (``store_client``)."""
    return store_client


def store_for(client: RedisClient, prefix: str) -> RedisAggregateStore:
    return RedisAggregateStore(client, settings=RedisSettings(key_prefix=prefix), topic="events")


async def flush_partitions(
    store: RedisAggregateStore, events: list[dict[str, Any]], partitions: Sequence[int]
) -> None:
    """Each partition's share of ``events`` (placed by unit), in one flush of its own."""
    for p in partitions:
        claim = await store.claim(p)
        offset = claim.offset
        delta = PartitionDelta(partition=p, next_offset=(offset or 0) + 1)
        fold([decoded(e) for e in events if partition_of(e["unit"], PARTITIONS) == p], delta.cells)
        await store.flush(delta, epoch=claim.epoch, expected_offset=offset)


async def as_stored(
    client: RedisClient, prefix: str, flag: str, versions: Sequence[int]
) -> FlagAggregates:
    """The stored hashes summed field by field, partition by partition and version by version,
    in that order, and the HyperLogLogs counted per partition and arm: what a read returns."""
    fields: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
    units = dict.fromkeys(ARMS, 0)
    heaviest: dict[str, list[Heaviest]] = {arm: [] for arm in ARMS}
    wanted = sorted(set(versions))
    for p in sorted(int(m) for m in await client.smembers(f"{prefix}:partitions:events")):
        tag = f"{{{prefix}:events:{p}}}"
        for arm in ARMS:
            for v in wanted:
                row = await client.hgetall(f"{tag}:a:{flag}:{v}:{arm}")
                for name, value in row.items():
                    key = name.decode() if isinstance(name, bytes) else name
                    fields[arm][key] = fields[arm].get(key, 0) + float(value)
                heaviest[arm].append(await stored_heaviest(client, tag, f"{flag}:{v}:{arm}"))
                for form in "bnh":
                    stored = await client.get(f"{tag}:{form}:{flag}:{v}:{arm}")
                    for lane, count in lane_fields(stored, form):
                        fields[arm][lane] = fields[arm].get(lane, 0) + count
            if wanted:
                units[arm] += await client.pfcount(*(f"{tag}:u:{flag}:{v}:{arm}" for v in wanted))
    return FlagAggregates(
        flag=flag,
        versions=frozenset(wanted),
        treatment=_bucketed(
            ArmAggregate.from_fields(fields["treatment"], units=units["treatment"]),
            merged(heaviest["treatment"]),
        ),
        control=_bucketed(
            ArmAggregate.from_fields(fields["control"], units=units["control"]),
            merged(heaviest["control"]),
        ),
        watched=int(sum(fields[arm].get(WATCHED_FIELD, 0) for arm in ARMS)),
        both_arms=int(sum(fields[arm].get(BOTH_FIELD, 0) for arm in ARMS)),
    )


LANE_FORMS = {"b": (">q", 1), "n": (">H", 1), "h": (">I", 2**16)}
"""Per form of a cell's string: its lanes' struct format, and what each counts for."""


def lane_fields(packed: object, form: str) -> list[tuple[str, int]]:
    """A cell's string of lanes (64-bit lanes ``b``, low words ``n``, high words ``h``) as the
    hash fields it stands for (``u<bucket>.<kind>``), one big-endian integer at a time."""
    data = packed if isinstance(packed, bytes) else b""
    layout, scale = LANE_FORMS[form]
    size = struct.calcsize(layout)
    out = []
    for lane in range(len(data) // size):
        kind, bucket = LANE_KINDS[lane // UNIT_BUCKETS], lane % UNIT_BUCKETS
        count = struct.unpack_from(layout, data, size * lane)[0]
        out.append((f"u{bucket}.{kind}", count * scale))
    return out


def assert_same_read(got: FlagAggregates, want: FlagAggregates, *, where: str) -> None:
    """Every field to the last bit, but the unit buckets' value sums, which Redis adds (to
    1e-12 relative: they feed a variance, not a published sum)."""
    for arm in ("treatment", "control"):
        mine, theirs = getattr(got, arm), getattr(want, arm)
        assert mine.buckets is not None, where
        assert theirs.buckets is not None, where
        for a, b in zip(mine.buckets.totals, theirs.buckets.totals, strict=True):
            assert abs(a - b) <= 1e-12 * max(1.0, abs(b)), where
    unbucketed = {a: replace(getattr(want, a), buckets=getattr(got, a).buckets) for a in ARMS}
    assert got == replace(want, **unbucketed), where


async def stored_heaviest(client: RedisClient, tag: str, cell: str) -> Heaviest:
    """One cell's heaviest units as stored (``cell``: flag, version and arm): each member a
    unit's field then its id, its failures in its shard."""
    listed = await client.zrange(f"{tag}:t:{cell}", 0, -1, withscores=True)
    level, split = (int(x or 0) for x in await client.hmget(f"{tag}:k:{cell}", "level", "split"))
    rows = []
    for member, n in cast("list[tuple[bytes, float]]", listed):
        field, unit = member[:8], member[8:].decode()
        shard = f"{tag}:k:{cell}:{unit_shard(field, level, split)}"
        rows.append((unit, int(n), int(await client.hget(shard, field + FAILURES_MARK) or 0)))
    return partition_list(rows, full=len(rows) >= HEAVIEST_KEPT)


def _bucketed(arm: ArmAggregate, heaviest: Heaviest | None = None) -> ArmAggregate:
    """An events arm as a read gives it: with unit buckets, empty when none were counted."""
    buckets = arm.buckets if arm.buckets is not None else NO_BUCKETS
    return replace(arm, buckets=buckets, heaviest=heaviest or Heaviest())


def random_events(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    names = ("checkout_completed", "signup", "app:v2.paid")
    return [make_event(rng, i, flags=len(FLAGS), versions=3, names=names) for i in range(n)]


async def test_a_read_is_the_stored_fields_added_in_order_to_the_last_bit(
    client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(client, redis_namespace)
    events = random_events(5, 3000)
    # Two flushes per partition: float sums that are not round in any version.
    await flush_partitions(store, events[:1500], range(PARTITIONS))
    await flush_partitions(store, events[1500:], range(PARTITIONS))
    wanted = [(f, vs) for f in FLAGS for vs in ([1], [2, 3], [3, 1, 2], [])] + [("nobody", [1])]
    for flag, versions in wanted:
        got = await store.read(flag, versions)
        want = await as_stored(client, redis_namespace, flag, versions)
        assert_same_read(got, want, where=f"{flag}{versions}")
    together = await store.read_many(wanted)
    assert together == [await store.read(flag, versions) for flag, versions in wanted]
    busy = together[0]
    assert busy.treatment.latency_sum_ms % 1  # sums of decimals, not whole numbers
    named = busy.treatment.named["checkout_completed"]
    assert 0 < named.values < named.count < busy.treatment.conversions
    assert named.value_sum % 1
    assert busy.control.exposures > 0
    assert sum(busy.treatment.latency_histogram) == busy.treatment.latency_count > 0


@pytest.mark.parametrize(
    "adds",
    [
        [65_535, 1],  # a low word that fills, then wraps to 0
        [3 * 2**16 + 5, 2**16 - 5, 7],  # more than one wrap in one increment
        [2**40 + 17, 1, 2**16],  # far past the low word, and whole words
    ],
)
async def test_a_lane_past_its_low_word_carries_into_its_high_word_exactly(
    client: RedisClient, redis_namespace: str, adds: list[int]
) -> None:
    store = store_for(client, redis_namespace)
    claim = await store.claim(0)
    tag = f"{{{redis_namespace}:events:0}}"
    slot, beside = 5 * KIND_COUNT + REQUESTS, 6 * KIND_COUNT + REQUESTS
    # Counts kept before in one string of 64-bit lanes, which a read still adds.
    lane = LANE_KINDS.index("r") * UNIT_BUCKETS + 5
    await client.set(f"{tag}:b:busy:1:treatment", bytes(8 * lane) + struct.pack(">q", 1000))
    offset = claim.offset
    for n, add in enumerate(adds):
        delta = PartitionDelta(partition=0, next_offset=n + 1)
        delta.cells["busy", 1, "treatment"] = CellDelta(req=add, counts={slot: add, beside: 3})
        for _ in range(2):  # each batch sent again: a replay, no second carry
            await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
        offset = delta.next_offset
    got = (await store.read("busy", [1])).treatment
    assert got.buckets is not None
    assert got.buckets.totals[slot] == sum(adds) + 1000
    assert got.buckets.totals[beside] == 3 * len(adds)
    assert got.requests == sum(adds)
    low = await client.getrange(f"{tag}:n:busy:1:treatment", 2 * lane, 2 * lane + 1)
    high = await client.getrange(f"{tag}:h:busy:1:treatment", 4 * lane, 4 * lane + 3)
    assert isinstance(low, bytes)
    assert isinstance(high, bytes)
    assert struct.unpack(">H", low)[0] == sum(adds) % 2**16
    assert struct.unpack(">I", high)[0] == sum(adds) // 2**16


async def test_a_partition_claimed_after_a_read_is_counted_by_the_next(
    client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(client, redis_namespace)
    events = random_events(9, 800)
    await flush_partitions(store, events, [0, 1])
    before = await store.read("flag-0", [1, 2, 3])
    # Another instance claims partitions 2 and 3 and flushes them; this store has read
    # the partitions once and does not ask again before each read.
    other = store_for(client, redis_namespace)
    await flush_partitions(other, events, [3, 2])
    after = await store.read("flag-0", [1, 2, 3])
    assert after == await as_stored(client, redis_namespace, "flag-0", [1, 2, 3])
    assert after.treatment.exposures > before.treatment.exposures
    assert await store.read_many([("flag-1", [1])]) == [await other.read("flag-1", [1])]


async def test_many_reads_in_several_calls_with_the_script_flushed_read_as_each_alone(
    client: RedisClient, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_for(client, redis_namespace)
    await flush_partitions(store, random_events(13, 1200), range(PARTITIONS))
    # At most two flags of one version to a call on a cluster, one on a node of 4 partitions.
    monkeypatch.setattr(aggregate_reads, "KEYS_PER_CALL", 8)
    wanted = [(f, [v]) for f in FLAGS for v in (1, 2, 3)] + [("nobody", [1, 2])]
    await client.script_flush()  # Redis restarted, say: the calls find no script loaded
    together = await store.read_many(wanted)
    await client.script_flush()
    assert together == [await store.read(flag, versions) for flag, versions in wanted]
    for (f, vs), got in zip(wanted, together, strict=True):
        assert_same_read(got, await as_stored(client, redis_namespace, f, vs), where=f)


async def test_a_field_that_is_no_number_fails_the_read_as_a_store_error(
    client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(client, redis_namespace)
    await flush_partitions(store, random_events(17, 200), range(PARTITIONS))
    await client.hset(f"{{{redis_namespace}:events:1}}:a:flag-0:1:control", "req", "many")
    with pytest.raises(StoreError, match="not a number: req"):
        await store.read("flag-0", [1])
    await client.set(f"{{{redis_namespace}:events:2}}:a:flag-1:1:control", "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await store.read("flag-1", [1])
    lanes = f"{{{redis_namespace}:events:3}}:b:flag-2:1:control"
    await client.delete(lanes)
    await client.hset(lanes, "x", "1")
    with pytest.raises(StoreError, match="is not a string"):
        await store.read("flag-2", [1])
    await client.delete(lanes)
    await client.set(lanes, b"\xff" * 8)  # a lane no count can be
    with pytest.raises(StoreError, match="negative count"):
        await store.read("flag-2", [1])
    await client.set(lanes, b"\x00" * 12)  # not whole lanes
    with pytest.raises(StoreError, match="12 bytes, not unit bucket lanes"):
        await store.read("flag-2", [1])
    await client.delete(lanes)
    words = f"{{{redis_namespace}:events:3}}:n:flag-2:1:control"
    await client.set(words, b"\x00" * 3)  # not whole low words
    with pytest.raises(StoreError, match="3 bytes, not unit bucket lanes"):
        await store.read("flag-2", [1])


class CountingConnection(aioredis.Connection):
    """A connection that counts the writes it sends: one per round trip."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)


async def test_on_one_node_a_read_is_one_round_trip(redis_url: str, redis_namespace: str) -> None:
    counted = aioredis.Redis.from_url(redis_url, connection_class=CountingConnection)
    try:
        store = store_for(counted, redis_namespace)
        await flush_partitions(store, random_events(19, 400), range(PARTITIONS))
        await store.read("flag-0", [1])  # the first read asks which partitions are claimed
        CountingConnection.writes = 0
        await store.read("flag-1", [1, 2])
        assert CountingConnection.writes == 1
        CountingConnection.writes = 0
        await store.read_many([(f, [1, 2, 3]) for f in FLAGS])
        assert CountingConnection.writes == 1
    finally:
        await drop_keys(counted, redis_namespace)
        await counted.aclose()


def with_cohorts(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """``events`` with each unit in one place per flag: an arm, carried, outside or held out."""
    rng = random.Random(seed)
    placed: dict[tuple[str, str], str] = {}
    for event in events:
        where = placed.setdefault((event["flag"], event["unit"]), rng.choice(
            ("treatment", "control", "carried", "outside", "holdout")))  # fmt: skip
        event["arm"] = "treatment" if where in ("treatment", "carried") else "control"
        if where in ("carried", "outside", "holdout"):
            event["cohort"] = where
    return events


async def test_a_holdout_read_sums_everyone_else_against_the_holdout(
    client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(client, redis_namespace)
    events = with_cohorts(random_events(21, 3000), 21)
    await flush_partitions(store, events, range(PARTITIONS))
    (read,) = await store.read_many([("flag-0", [1, 2, 3])], cells=HOLDOUT_CELLS)
    (arms,) = await store.read_many([("flag-0", [1, 2, 3])])
    ones = [e for e in events if e["flag"] == "flag-0"]
    rest = [e for e in ones if e.get("cohort") != "holdout"]
    held = [e for e in ones if e.get("cohort") == "holdout"]
    for got, want in ((read.treatment, rest), (read.control, held)):
        assert got.requests == sum(e["type"] == "request" for e in want)
        assert got.errors == sum(e.get("error") is True for e in want)
        assert got.units == pytest.approx(len({e["unit"] for e in want}), rel=0.02)
        assert got.buckets is not None
        assert got.buckets.total(REQUESTS) == got.requests
    # The arms alone are a part of everyone else: the cohorts add to them
    assert 0 < arms.treatment.requests + arms.control.requests < read.treatment.requests


def held_apart(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """``events`` as a holdout places units: a fifth held out of every flag, the others
    each in one place per flag (an arm, carried or outside)."""
    rng = random.Random(seed)
    held = {f"u{u}" for u in rng.sample(range(200), 40)}
    placed: dict[tuple[str, str], str] = {}
    places = ("treatment", "control", "carried", "outside")
    for event in events:
        key = (event["flag"], event["unit"])
        where = "holdout" if key[1] in held else placed.setdefault(key, rng.choice(places))
        event["arm"] = "treatment" if where in ("treatment", "carried") else "control"
        if where in ("carried", "outside", "holdout"):
            event["cohort"] = where
    return events


async def test_a_holdout_read_together_counts_a_unit_under_several_flags_once(
    client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(client, redis_namespace)
    events = held_apart(random_events(22, 3000), 22)
    await flush_partitions(store, events, range(PARTITIONS))
    reads = HoldoutReads(client, settings=RedisSettings(key_prefix=redis_namespace), topic="events")
    wanted = [("flag-0", [1, 2, 3]), ("flag-1", [1, 2, 3])]
    each, together = await reads(wanted)
    # Each flag is read as alone, and both flags' events are summed together
    assert each == await store.read_many(wanted, cells=HOLDOUT_CELLS)
    assert together.flag == "flag-0+flag-1"
    for got, held in ((together.treatment, False), (together.control, True)):
        ours = [
            e for e in events if e["flag"] != "flag-2" and (e.get("cohort") == "holdout") is held
        ]
        assert got.requests == sum(e["type"] == "request" for e in ours)
        assert got.errors == sum(e.get("error") is True for e in ours)
        # ...but each unit once, though both flags counted nearly every one of them
        people = len({e["unit"] for e in ours})
        counted = sum(len({e["unit"] for e in ours if e["flag"] == f}) for f, _ in wanted)
        assert counted > 1.8 * people
        assert got.units == pytest.approx(people, rel=0.02)
        assert sum(getattr(arm, "control" if held else "treatment").units for arm in each) == (
            pytest.approx(counted, rel=0.02)
        )
