"""Named conversions in the Redis store, one node and a 3-master cluster: each name
counted apart and in the total, the cap on a flag's names, and a damaged set of names.

The store's exact sums of named conversions against a reference fold are in
``test_store.py`` and ``test_aggregate_reads.py`` (their events carry names).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient
from controller.core.common.errors import FlushRefused
from controller.core.stats.aggregates import (
    MAX_CONVERSION_NAMES,
    OTHER_CONVERSIONS,
    Conversions,
)
from controller.core.stats.folding import PartitionDelta, fold
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.integration.rig import drop_keys
from tests.integration.stores.test_store import decoded

pytestmark = pytest.mark.integration


@pytest.fixture(params=["node", "cluster"])
async def store(
    request: pytest.FixtureRequest, redis_namespace: str
) -> AsyncIterator[RedisAggregateStore]:
    url = request.getfixturevalue("redis_url" if request.param == "node" else "redis_cluster_url")
    async with connect(RedisSettings(url=str(url))) as client:
        settings = RedisSettings(key_prefix=redis_namespace, aggregate_ttl_seconds=3600)
        yield RedisAggregateStore(client, settings=settings, topic="events")
        await drop_keys(client, redis_namespace)


class Partition:
    """One claimed partition of the store, flushed batch after batch."""

    def __init__(self, store: RedisAggregateStore, number: int = 0) -> None:
        self.store, self.number = store, number
        self.epoch = 0
        self.stored: int | None = None
        """The next offset to read, as the store holds it."""

    async def claim(self) -> Partition:
        claim = await self.store.claim(self.number)
        self.epoch, self.stored = claim.epoch, claim.offset
        return self

    async def flush(
        self, events: list[dict[str, Any]], *, since: int | None = None
    ) -> FlushOutcome:
        """Flush ``events`` as the batch read from the stored offset (or from ``since``)."""
        start = self.stored if since is None else since
        delta = PartitionDelta(partition=self.number, next_offset=(start or 0) + len(events))
        fold([decoded(e) for e in events], delta.cells)
        outcome = await self.store.flush(delta, epoch=self.epoch, expected_offset=start)
        self.stored = max(self.stored or 0, delta.next_offset)
        return outcome


def conversion(
    n: int, arm: str, name: str | None, *, flag: str = "f", value: float | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "conversion",
        "v": 1,
        "id": f"{flag}-{arm}-{n}",
        "ts": 1_763_780_000_000,
        "flag": flag,
        "unit": f"u{n}",
        "arm": arm,
        "flag_version": 1,
    }
    if name is not None:
        event["name"] = name
    if value is not None:
        event["value"] = value
    return event


async def test_each_name_is_counted_apart_and_every_conversion_in_the_total(
    store: RedisAggregateStore, redis_namespace: str
) -> None:
    events = [
        conversion(0, "treatment", "checkout_completed", value=10.0),
        conversion(1, "treatment", "checkout_completed", value=30.0),
        conversion(2, "treatment", "signup"),
        conversion(3, "treatment", None, value=1.0),
        conversion(4, "control", "app:v2.paid", value=2.5),
    ]
    partition = await Partition(store).claim()
    assert await partition.flush(events) is FlushOutcome.APPLIED
    got = await store.read("f", [1])
    assert (got.treatment.conversions, got.treatment.conversion_values) == (4, 3)
    assert got.treatment.conversion_value_sum == 41.0
    assert got.treatment.named == {
        "checkout_completed": Conversions(2, 2, 40.0, 1000.0),
        "signup": Conversions(1),
    }
    assert got.control.named == {"app:v2.paid": Conversions(1, 1, 2.5, 6.25)}
    # The flag's names expire with its aggregates.
    names = f"{{{redis_namespace}:events:0}}:cn:f"
    assert await store._redis.smembers(names) == {b"checkout_completed", b"signup", b"app:v2.paid"}
    assert 0 < await store._redis.ttl(names) <= 3600
    # A replayed batch changes nothing.
    assert await partition.flush(events, since=0) is FlushOutcome.REPLAYED
    assert await store.read("f", [1]) == got


async def test_a_flag_keeps_its_first_names_and_counts_the_rest_as_other(
    store: RedisAggregateStore,
) -> None:
    cap = MAX_CONVERSION_NAMES
    names = [f"n{i:03d}" for i in range(cap + 6)]
    partition = await Partition(store).claim()
    # The first batch brings all but the last three names, first seen first, in the
    # control arm; the next brings the rest, and names the first batch kept, in treatment.
    first = [conversion(i, "control", name) for i, name in enumerate(names[:-3])]
    await partition.flush(first)
    late = [*names[-3:], names[0], names[cap - 1], names[cap]]
    second = [conversion(100 + i, "treatment", name, value=1.0) for i, name in enumerate(late)]
    await partition.flush(second)
    # And another flag has names of its own.
    await partition.flush([conversion(7, "control", name, flag="g") for name in names[-3:]])

    got = await store.read("f", [1])
    kept = set(names[:cap])
    assert set(got.control.named) == kept | {OTHER_CONVERSIONS}
    assert got.control.named[OTHER_CONVERSIONS] == Conversions(3)  # names cap..cap+2
    assert got.control.conversions == len(first)  # every conversion counts in the total
    # In the other arm, a kept name is counted by name, one past the cap as other.
    assert got.treatment.named == {
        names[0]: Conversions(1, 1, 1.0, 1.0),
        names[cap - 1]: Conversions(1, 1, 1.0, 1.0),
        OTHER_CONVERSIONS: Conversions(4, 4),  # counts only: no sums of other names
    }
    assert got.treatment.conversion_value_sum == 6.0
    other_flag = await store.read("g", [1])
    assert set(other_flag.control.named) == set(names[-3:])


async def test_a_damaged_set_of_names_refuses_the_batch_and_writes_nothing(
    store: RedisAggregateStore, redis_namespace: str
) -> None:
    client: RedisClient = store._redis
    await client.set(f"{{{redis_namespace}:events:0}}:cn:f", "not a set")
    partition = await Partition(store).claim()
    unnamed = [conversion(1, "control", None)]
    assert await partition.flush(unnamed) is FlushOutcome.APPLIED  # no name: no set read
    with pytest.raises(FlushRefused, match="cn:f holds a string, not a set"):
        await partition.flush([conversion(2, "control", "signup")])
    got = await store.read("f", [1])
    assert (got.control.conversions, got.control.named) == (1, {})
