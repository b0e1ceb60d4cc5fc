"""The Redis store against a real Redis, one node and a 3-master cluster: exactness,
replays, fencing, TTL."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from controller.adapters.redis.aggregates import IdWindow, RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient
from controller.adapters.redis.ledger import SLICE, EventLedger
from controller.adapters.redis.rollouts import RolloutStore
from controller.adapters.redis.segments import SegmentStore
from controller.core.common.errors import (
    DuplicateEvents,
    FencedError,
    FlushRefused,
    LostWrites,
    StoreError,
)
from controller.core.stats.aggregates import watched_members
from controller.core.stats.folding import PartitionDelta, Seen, fold
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.ports import (
    CommandSeen,
    FlushOutcome,
    Loaded,
    SaveOutcome,
    StateWrite,
    StoredSegment,
)
from controller.settings import RedisSettings
from tests.integration.rig import drop_keys
from tests.support.reference import (
    assert_arm_equal,
    encode,
    expected_arm,
    expected_watch,
    make_event,
    partition_of,
    reference_fold,
)
from tests.unit.core.machine.gate.test_gate import rollout

pytestmark = pytest.mark.integration
PARTITIONS = 3


def decoded(event: dict[str, Any]) -> InEvent:
    result = decode_event(encode(event), max_bytes=65536)
    assert not isinstance(result, Rejection), result
    return result


def store_for(client: RedisClient, prefix: str, *, ttl: int = 3600) -> RedisAggregateStore:
    settings = RedisSettings(key_prefix=prefix, aggregate_ttl_seconds=ttl)
    return RedisAggregateStore(client, settings=settings, topic="events")


async def _flush_stream(
    store: RedisAggregateStore, events: list[dict[str, Any]], cuts: list[int], replays: list[int]
) -> None:
    """Place events on partitions, cut into batches at ``cuts``, replay batches in ``replays``."""
    claims = {p: await store.claim(p) for p in range(PARTITIONS)}
    next_offset = dict.fromkeys(range(PARTITIONS), 0)
    stored: dict[int, int | None] = {p: c.offset for p, c in claims.items()}
    flushed: list[tuple[PartitionDelta, int | None]] = []
    bounds = sorted({0, *cuts, len(events)})
    for start, end in itertools.pairwise(bounds):
        by_partition: dict[int, list[InEvent]] = {}
        for e in events[start:end]:
            by_partition.setdefault(partition_of(e["unit"], PARTITIONS), []).append(decoded(e))
        for p, batch in by_partition.items():
            next_offset[p] += len(batch)
            delta = PartitionDelta(partition=p, next_offset=next_offset[p])
            fold(batch, delta.cells)
            outcome = await store.flush(delta, epoch=claims[p].epoch, expected_offset=stored[p])
            assert outcome is FlushOutcome.APPLIED
            flushed.append((delta, stored[p]))
            stored[p] = next_offset[p]
        for index in replays:
            if index < len(flushed):
                delta, expected = flushed[index]
                again = await store.flush(
                    delta, epoch=claims[delta.partition].epoch, expected_offset=expected
                )
                assert again is FlushOutcome.REPLAYED


async def _check_against_reference(
    store: RedisAggregateStore, events: list[dict[str, Any]]
) -> None:
    cells = reference_fold(events)
    for flag in {e["flag"] for e in events}:
        for versions in ({1}, {1, 2, 3}, {2, 3}):
            got = await store.read(flag, versions)
            for arm, agg in (("treatment", got.treatment), ("control", got.control)):
                want, _ = expected_arm(cells, flag, versions, arm)
                assert_arm_equal(agg, want, where=f"{flag}{sorted(versions)}.{arm}")
            # Units seen in both arms: exact on the watched sample, replays counted once.
            assert (got.watched, got.both_arms) == expected_watch(events, flag, versions)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 400),
    cuts=st.lists(st.integers(0, 400), max_size=12),
    replays=st.lists(st.integers(0, 30), max_size=6),
)
def test_store_equals_reference_fold(
    store_url: str, seed: int, n: int, cuts: list[int], replays: list[int]
) -> None:
    """Random event mixes, random batch boundaries and redelivered batches: exact sums."""
    rng = random.Random(seed)
    events = [make_event(rng, i, names=("checkout_completed", "signup")) for i in range(n)]

    async def scenario() -> None:
        prefix = f"prop{seed}-{rng.randrange(1 << 30)}"
        async with connect(RedisSettings(url=store_url)) as client:
            store = store_for(client, prefix)
            try:
                await _flush_stream(store, events, cuts, replays)
                await _check_against_reference(store, events)
            finally:
                await drop_keys(client, prefix)

    asyncio.run(scenario())


async def test_stale_epoch_is_refused(store_client: RedisClient, redis_namespace: str) -> None:
    store = store_for(store_client, redis_namespace)
    old = await store.claim(0)
    new = await store.claim(0)  # a second owner took the partition over
    assert new.epoch == old.epoch + 1
    delta = PartitionDelta(partition=0, next_offset=5)
    fold([decoded(make_event(random.Random(1), 1))], delta.cells)
    with pytest.raises(FencedError, match="epoch"):
        await store.flush(delta, epoch=old.epoch, expected_offset=None)
    assert await store.offset(0) is None
    assert (await store.read(delta_flag(delta), {1, 2, 3})).treatment.exposures == 0
    assert await store.flush(delta, epoch=new.epoch, expected_offset=None) is FlushOutcome.APPLIED
    assert await store.offset(0) == 5


def delta_flag(delta: PartitionDelta) -> str:
    return next(iter(delta.cells))[0]


async def test_offset_conflict_is_refused(store_client: RedisClient, redis_namespace: str) -> None:
    store = store_for(store_client, redis_namespace)
    claim = await store.claim(1)
    first = PartitionDelta(partition=1, next_offset=10)
    assert await store.flush(first, epoch=claim.epoch, expected_offset=None) is FlushOutcome.APPLIED
    skipped = PartitionDelta(partition=1, next_offset=30)
    # Stored behind what this owner wrote: Redis lost writes (replayed, not fenced)
    with pytest.raises(LostWrites, match="stored offset is 10") as lost:
        await store.flush(skipped, epoch=claim.epoch, expected_offset=20)
    assert lost.value.stored_offset == 10
    # Stored ahead of what this owner expects: not this owner's to undo
    with pytest.raises(FencedError, match="stored offset is 10"):
        await store.flush(skipped, epoch=claim.epoch, expected_offset=5)
    assert await store.offset(1) == 10


async def test_keys_carry_a_ttl_and_share_a_slot(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace, ttl=600)
    claim = await store.claim(2)
    delta = PartitionDelta(partition=2, next_offset=1)
    delta.rejects["malformed_json"] += 1
    event = make_event(random.Random(2), 1)
    assert watched_members([event["unit"]]), "a unit drawn into the watched sample"
    fold([decoded(event)], delta.cells)
    await store.flush(delta, epoch=claim.epoch, expected_offset=None)
    keys = [
        k.decode() async for k in store_client.scan_iter(match=f"{{{redis_namespace}:events:2}}*")
    ]
    assert len(keys) == 8  # meta, rejects, flags, dirty, aggregate, units, watched, lanes
    for key in keys:
        ttl = await store_client.ttl(key)
        assert (ttl == -1) if key.endswith(":meta") else (0 < ttl <= 600), (key, ttl)
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert await store.rejects() == {"malformed_json": 1}


async def test_states_load_together_and_an_unreadable_one_is_its_own_error(
    store_client: RedisClient, redis_namespace: str
) -> None:
    states = RolloutStore(store_client, settings=RedisSettings(key_prefix=redis_namespace))
    for flag in ("a", "c"):
        saved = rollout().model_copy(update={"flag": flag})
        assert await states.save(flag, StateWrite(rev=0, rollout=saved)) == SaveOutcome.SAVED
    await store_client.hset(f"{{{redis_namespace}:flag:c}}:state", "doc", b"{not json")
    found = await states.load_many(["a", "b", "c"])
    first, missing, broken = found
    assert isinstance(first, Loaded)
    assert first.rollout is not None
    assert (first.rollout.flag, first.rev) == ("a", 1)
    assert missing == Loaded(0, None)
    assert isinstance(broken, StoreError)
    assert "c: the stored rollout state is unreadable" in str(broken)
    assert [await states.load("a")] == found[:1]


async def test_every_state_loads_in_flag_order_with_an_unreadable_one_as_its_error(
    store_client: RedisClient, redis_namespace: str
) -> None:
    states = RolloutStore(store_client, settings=RedisSettings(key_prefix=redis_namespace))
    assert await states.load_all() == {}
    for flag in ("c", "a", "b"):
        saved = rollout().model_copy(update={"flag": flag})
        assert await states.save(flag, StateWrite(rev=0, rollout=saved)) == SaveOutcome.SAVED
    await store_client.hset(f"{{{redis_namespace}:flag:b}}:state", "doc", b"{not json")
    found = await states.load_all()
    assert list(found) == ["a", "b", "c"]
    assert found["a"] == await states.load("a")
    assert isinstance(found["b"], StoreError)
    assert found["c"] == await states.load("c")


async def test_a_state_is_decoded_once_per_stored_document(
    store_client: RedisClient, redis_namespace: str
) -> None:
    settings = RedisSettings(key_prefix=redis_namespace)
    states, other = (
        RolloutStore(store_client, settings=settings),
        RolloutStore(store_client, settings=settings),
    )
    first = rollout().model_copy(update={"flag": "a"})
    assert await states.save("a", StateWrite(rev=0, rollout=first)) == SaveOutcome.SAVED
    once, (again,) = await states.load("a"), await states.load_many(["a"])
    assert isinstance(again, Loaded)
    assert once.rollout == first
    assert again.rollout is once.rollout  # the same document: not decoded again
    # Another instance saves a new state: this one decodes it
    moved = first.model_copy(update={"note": "moved on"})
    assert await other.save("a", StateWrite(rev=1, rollout=moved)) == SaveOutcome.SAVED
    now = await states.load("a")
    assert (now.rev, now.rollout) == (2, moved)
    # A document damaged in place is an error, never the rollout kept from before
    await store_client.hset(f"{{{redis_namespace}:flag:a}}:state", "doc", b"{not json")
    with pytest.raises(StoreError, match="a: the stored rollout state is unreadable"):
        await states.load("a")


async def test_a_command_read_again_is_told_from_one_sent_again_until_both_are_forgotten(
    store_client: RedisClient, redis_namespace: str
) -> None:
    states = RolloutStore(store_client, settings=RedisSettings(key_prefix=redis_namespace))
    first = "rollout.commands:0:7"
    assert await states.seen("f", "c1", first) is CommandSeen.NEW
    write = StateWrite(rev=0, rollout=rollout(), command_id="c1", now_ms=1_000, keep_ms=500)
    assert await states.save("f", replace(write, delivery=first)) is SaveOutcome.SAVED
    assert await states.seen("f", "c1", first) is CommandSeen.REDELIVERED
    assert await states.seen("f", "c1", "rollout.commands:0:9") is CommandSeen.REPLAYED
    assert await states.seen("f", "c1", "rollout.commands:1:7") is CommandSeen.REPLAYED
    assert await states.seen("f", "c1") is CommandSeen.REPLAYED
    assert await states.seen("g", "c1", first) is CommandSeen.NEW
    # A later command, past the kept window, trims the first's id and record together
    later = StateWrite(rev=-1, rollout=None, command_id="c2", now_ms=2_000, keep_ms=500)
    later = replace(later, delivery="rollout.commands:0:8")
    assert await states.save("f", later) is SaveOutcome.SAVED
    assert await states.seen("f", "c1", first) is CommandSeen.NEW
    deliveries = f"{{{redis_namespace}:flag:f}}:deliveries"
    assert await store_client.zrange(deliveries, 0, -1) == [b"rollout.commands:0:8"]


async def test_a_segment_keeps_the_records_its_commands_and_parts_were_read_from(
    store_client: RedisClient, redis_namespace: str
) -> None:
    segments = SegmentStore(store_client, settings=RedisSettings(key_prefix=redis_namespace))
    for index in (0, 1):
        at = f"rollout.commands:0:{index + 3}"
        assert (
            await segments.stage("s", "up1", index, f"p{index}", ttl_s=60, delivery=at) == index + 1
        )
    assert sorted(await segments.staged_from("s", "up1")) == [
        "rollout.commands:0:3",
        "rollout.commands:0:4",
    ]
    records = f"{{{redis_namespace}:segment:s}}:from:up1"
    assert 0 < await store_client.ttl(records) <= 60  # forgotten with the upload's parts
    read_from = (*await segments.staged_from("s", "up1"), "rollout.commands:0:1")
    stored = StoredSegment({"name": "s", "version": 1}, ["p0", "p1"], ("up1", "c1"), read_from)
    assert await segments.put("s", 0, stored)
    await segments.drop_upload("s", "up1")
    assert await segments.staged_from("s", "up1") == []
    assert await store_client.exists(records) == 0
    assert await segments.get("s", with_parts=True) == stored


async def test_reads_together_sum_as_each_read_alone(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    rng = random.Random(11)
    events = [
        {**make_event(rng, i), "flag": f"f{i % 3}", "flag_version": 1 + i % 2} for i in range(300)
    ]
    for p in range(PARTITIONS):
        claim = await store.claim(p)
        delta = PartitionDelta(partition=p, next_offset=1)
        fold([decoded(e) for e in events if partition_of(e["unit"], PARTITIONS) == p], delta.cells)
        await store.flush(delta, epoch=claim.epoch, expected_offset=None)
    wanted = [("f0", [1, 2]), ("f1", [2]), ("nobody", [1]), ("f2", []), ("f2", [1])]
    together = await store.read_many(wanted)
    assert together == [await store.read(flag, versions) for flag, versions in wanted]
    assert together[0].treatment.exposures + together[0].control.exposures > 0
    assert await store.read_many([]) == []


# -- event ids: each counted once within the window ---------------------------------------


def folded(
    partition: int,
    next_offset: int,
    events: list[dict[str, Any]],
    known: frozenset[str] = frozenset(),
) -> PartitionDelta:
    """``events`` folded as ingest folds them: each id once, ``known`` ids skipped."""
    delta = PartitionDelta(partition=partition, next_offset=next_offset, seen=Seen.skipping(known))
    fold([decoded(e) for e in events], delta.cells, seen=delta.seen)
    return delta


async def counted(store: RedisAggregateStore, events: list[dict[str, Any]]) -> int:
    total = 0
    for flag in {e["flag"] for e in events}:
        got = await store.read(flag, {1, 2, 3})
        for arm in (got.treatment, got.control):
            total += arm.exposures + arm.requests + arm.conversions
    return total


async def test_a_rebatched_copy_is_refused_whole_naming_the_ids_then_counted_without_them(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    rng = random.Random(11)
    first = [make_event(rng, i, flags=2, units=5) for i in range(25)]
    new = make_event(rng, 25, flags=2, units=5)
    claim = await store.claim(0)
    assert await store.flush(folded(0, 25, first), epoch=claim.epoch, expected_offset=None) is (
        FlushOutcome.APPLIED
    )
    # The 25 acknowledged events again, with one new one, as records 25..50
    rebatched = [*first, new]
    with pytest.raises(DuplicateEvents) as refused:
        await store.flush(folded(0, 51, rebatched), epoch=claim.epoch, expected_offset=25)
    assert refused.value.ids == {e["id"] for e in first}
    assert (await store.offset(0), await counted(store, rebatched)) == (25, 25)  # nothing written
    again = folded(0, 51, rebatched, known=refused.value.ids)
    assert await store.flush(again, epoch=claim.epoch, expected_offset=25) is FlushOutcome.APPLIED
    assert (await store.offset(0), await counted(store, rebatched)) == (51, 26)
    await _check_against_reference(store, rebatched)


@pytest.mark.parametrize(
    ("window", "flushes", "last", "duplicate"),
    [
        # (seconds, most ids), [(at second, ids)...], then at (second, id): a duplicate?
        ((10, 1000), [(0, "a")], (5, "a"), True),
        ((10, 1000), [(0, "a")], (10, "a"), True),  # the window's last instant
        ((10, 1000), [(0, "a")], (10.001, "a"), False),  # past it: counted again
        ((10, 1000), [(0, "a"), (8, "b")], (12, "b"), True),
        ((3600, 3), [(1, "a"), (2, "b"), (3, "c"), (4, "d")], (5, "a"), False),  # oldest out
        ((3600, 3), [(1, "a"), (2, "b"), (3, "c"), (4, "d")], (5, "b"), True),
    ],
)
async def test_an_event_id_is_remembered_for_the_window_and_at_most_its_newest_ids(
    store_client: RedisClient,
    redis_namespace: str,
    window: tuple[int, int],
    flushes: list[tuple[float, str]],
    last: tuple[float, str],
    duplicate: bool,
) -> None:
    now = [0.0]
    store = RedisAggregateStore(
        store_client,
        settings=RedisSettings(key_prefix=redis_namespace),
        topic="events",
        dedupe=IdWindow(*window),
        clock=lambda: 1_700_000_000 + now[0],
    )
    rng = random.Random(5)
    claim, offset = await store.claim(0), 0

    async def flush_at(at: float, event_id: str) -> FlushOutcome:
        nonlocal offset
        now[0] = at
        delta = folded(0, offset + 1, [{**make_event(rng, 0), "id": event_id}])
        expected = offset or None
        outcome = await store.flush(delta, epoch=claim.epoch, expected_offset=expected)
        offset = delta.next_offset
        return outcome

    for at, event_id in flushes:
        assert await flush_at(at, event_id) is FlushOutcome.APPLIED
    if duplicate:
        with pytest.raises(DuplicateEvents) as refused:
            await flush_at(*last)
        assert refused.value.ids == {last[1]}
    else:
        assert await flush_at(*last) is FlushOutcome.APPLIED


async def test_an_id_window_of_the_wrong_type_refuses_the_batch_before_any_write(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    claim = await store.claim(0)
    await store_client.set(f"{{{redis_namespace}:events:0}}:ids", "not a sorted set")
    events = [make_event(random.Random(3), i) for i in range(3)]
    with pytest.raises(FlushRefused, match="ids holds a string"):
        await store.flush(folded(0, 3, events), epoch=claim.epoch, expected_offset=None)
    assert (await store.offset(0), await counted(store, events)) == (None, 0)


async def test_the_intake_record_of_sent_events_keeps_the_first_content_on_one_node_or_many(
    store_client: RedisClient, redis_namespace: str
) -> None:
    ledger = EventLedger(store_client, settings=RedisSettings(key_prefix=redis_namespace))
    # Keys of many slots on a cluster, in more pipelines than one (SLICE commands each)
    ids = [f"event-{i}" for i in range(2 * SLICE + 50)]
    assert await ledger.recall(ids) == {}
    await ledger.remember({i: f"digest-{i}" for i in ids[: SLICE + 30]}, ttl_s=60)
    await ledger.remember({ids[0]: "other", ids[-1]: "digest-last"}, ttl_s=60)
    assert await ledger.recall(ids) == {
        **{i: f"digest-{i}" for i in ids[: SLICE + 30]},
        ids[-1]: "digest-last",
    }
    assert 0 < await store_client.ttl(f"{redis_namespace}:intake:event:{ids[0]}") <= 60
