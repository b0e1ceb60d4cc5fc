"""An events partition's counted ids in Redis: what a new owner reads is what the old one knew.

The owner of an events partition checks a batch's ids in memory; these tests
prove that the list the flush script keeps in Redis carries the same ids to
the next owner, to a retry whose answer was lost, and over an upgrade from the
sorted set that held them before.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from controller.adapters.redis.aggregates import IdWindow, RedisAggregateStore
from controller.adapters.redis.client import RedisClient
from controller.core.common.errors import DuplicateEvents
from controller.core.stats.folding import PartitionDelta, Seen, fold
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.integration.stores.test_store import decoded
from tests.support.reference import make_event

pytestmark = pytest.mark.integration

T0 = 1_700_000_000


def folded(next_offset: int, events: list[dict[str, Any]]) -> PartitionDelta:
    delta = PartitionDelta(partition=0, next_offset=next_offset, seen=Seen.skipping(frozenset()))
    fold([decoded(e) for e in events], delta.cells, seen=delta.seen)
    return delta


def store_at(
    client: RedisClient, prefix: str, now: list[float], window: IdWindow
) -> RedisAggregateStore:
    return RedisAggregateStore(
        client,
        settings=RedisSettings(key_prefix=prefix),
        topic="events",
        dedupe=window,
        clock=lambda: T0 + now[0],
    )


@pytest.mark.parametrize(
    ("window", "flushes", "last", "duplicate"),
    [
        # (seconds, most ids), [(at second, ids of one batch)...], then at (second, id)
        ((10, 1000), [(0, ["a"])], (5, "a"), True),
        ((10, 1000), [(0, ["a"])], (10, "a"), True),
        ((10, 1000), [(0, ["a"])], (10.001, "a"), False),
        ((10, 1000), [(0, ["a"]), (8, ["b"])], (12, "b"), True),
        ((3600, 3), [(1, ["a"]), (2, ["b"]), (3, ["c"]), (4, ["d"])], (5, "a"), False),
        ((3600, 3), [(1, ["a"]), (2, ["b"]), (3, ["c"]), (4, ["d"])], (5, "b"), True),
        ((3600, 3), [(1, ["a", "b"]), (2, ["c", "d"])], (5, "a"), True),  # batches kept whole
        ((3600, 3), [(1, ["a", "b"]), (2, ["c", "d", "e"])], (5, "b"), False),
    ],
)
async def test_a_new_owner_reads_the_ids_the_old_one_knew_and_forgets_as_it_did(
    store_client: RedisClient,
    redis_namespace: str,
    window: tuple[int, int],
    flushes: list[tuple[float, list[str]]],
    last: tuple[float, str],
    duplicate: bool,
) -> None:
    now, rng, offset = [0.0], random.Random(5), 0
    old = store_at(store_client, redis_namespace, now, IdWindow(*window))
    claim = await old.claim(0)
    for at, ids in flushes:
        now[0] = at
        delta = folded(offset + len(ids), [{**make_event(rng, 0), "id": i} for i in ids])
        outcome = await old.flush(delta, epoch=claim.epoch, expected_offset=offset or None)
        assert outcome is FlushOutcome.APPLIED
        offset = delta.next_offset
    new = store_at(store_client, redis_namespace, now, IdWindow(*window))
    claim = await new.claim(0)  # the old owner is gone: the new one reads the list
    now[0] = last[0]
    delta = folded(offset + 1, [{**make_event(rng, 0), "id": last[1]}])
    if duplicate:
        with pytest.raises(DuplicateEvents) as refused:
            await new.flush(delta, epoch=claim.epoch, expected_offset=offset)
        assert refused.value.ids == {last[1]}
    else:
        assert await new.flush(delta, epoch=claim.epoch, expected_offset=offset) is (
            FlushOutcome.APPLIED
        )


async def test_a_flush_applied_whose_answer_was_lost_is_replayed_and_its_ids_are_known(
    store_client: RedisClient, redis_namespace: str
) -> None:
    now, rng = [0.0], random.Random(8)
    owner = store_at(store_client, redis_namespace, now, IdWindow())
    claim = await owner.claim(0)
    first = [make_event(rng, i) for i in range(10)]
    # The owner's flush reached Redis and was applied, but its answer never came back
    # (here: the same call made through another connection the owner does not see).
    lost_answer = store_at(store_client, redis_namespace, now, IdWindow())
    await lost_answer.flush(folded(10, first), epoch=claim.epoch, expected_offset=None)
    assert await owner.flush(folded(10, first), epoch=claim.epoch, expected_offset=None) is (
        FlushOutcome.REPLAYED
    )
    copy = [*first[:3], make_event(rng, 10)]
    with pytest.raises(DuplicateEvents) as refused:
        await owner.flush(folded(14, copy), epoch=claim.epoch, expected_offset=10)
    assert refused.value.ids == {e["id"] for e in first[:3]}


async def test_ids_in_the_sorted_set_of_before_are_known_after_an_upgrade(
    store_client: RedisClient, redis_namespace: str
) -> None:
    now, rng = [0.0], random.Random(9)
    window = IdWindow(seconds=60)
    ids_key = f"{{{redis_namespace}:events:0}}:ids"
    # As the flush script before the list left it: id -> when counted (ms), expiring with the window
    await store_client.zadd(ids_key, {"old-1": T0 * 1000 - 30_000, "old-2": T0 * 1000})
    await store_client.pexpire(ids_key, 60_000)
    store = store_at(store_client, redis_namespace, now, window)
    claim = await store.claim(0)
    events = [{**make_event(rng, 0), "id": "old-2"}, {**make_event(rng, 1), "id": "new"}]
    with pytest.raises(DuplicateEvents) as refused:
        await store.flush(folded(2, events), epoch=claim.epoch, expected_offset=None)
    assert refused.value.ids == {"old-2"}
    assert await store_client.type(ids_key) in (b"list", "list")


@pytest.mark.parametrize("source", [None, "otlp.logs"])
async def test_a_flush_of_joins_alone_is_applied_at_the_stored_offset_once_by_its_ids(
    store_client: RedisClient, redis_namespace: str, source: str | None
) -> None:
    """A restart's replay may complete joins no fresh record carries: they are flushed with
    no record, at the stored offset. The offset cannot tell a copy of such a flush; the id
    window does, and an ordinary batch sent again is still a replay by its offset."""
    now, rng = [0.0], random.Random(10)
    store = RedisAggregateStore(
        store_client,
        settings=RedisSettings(key_prefix=redis_namespace),
        topic="events",
        dedupe=IdWindow(),
        clock=lambda: T0 + now[0],
        source=source,
    )
    claim = await store.claim(0)
    drawn = (make_event(rng, i, flags=1, versions=1) for i in range(100))
    events = [e for e in drawn if e["type"] == "request"][:4]
    batch = folded(4, events[:2])
    assert await store.flush(batch, epoch=claim.epoch, expected_offset=None) is (
        FlushOutcome.APPLIED
    )
    joins = folded(4, events[2:])  # no record: the offset stays at 4
    assert await store.flush(joins, epoch=claim.epoch, expected_offset=4) is FlushOutcome.APPLIED
    assert await store.offset(0) == 4
    (version,) = {e["flag_version"] for e in events}
    counted = await store.read("flag-0", {version})
    assert counted.treatment.requests + counted.control.requests == 4
    with pytest.raises(DuplicateEvents) as refused:
        await store.flush(folded(4, events[2:]), epoch=claim.epoch, expected_offset=4)
    assert refused.value.ids == {e["id"] for e in events[2:]}
    # The first batch sent again, folded without its known ids: a replay, by its offset
    assert await store.flush(folded(4, []), epoch=claim.epoch, expected_offset=None) is (
        FlushOutcome.REPLAYED
    )
