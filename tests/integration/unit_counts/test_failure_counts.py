"""Failures by fingerprint, on one node and on a 3-master cluster: exact, once, bounded.

The flush counts each named crash, exception and failed request under its fingerprint in the
arm's unit buckets while the flag keeps it (``failures.lua``): at most 16 at once, chosen by
their count over both arms. Checked against counts made here from the events themselves.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from controller.adapters.redis.cells.failure_counts import (
    FAILURE_CANDIDATES,
    FAILURES_EVER,
    FAILURES_KEPT,
    failure_key,
    request_key,
)
from controller.adapters.redis.client import RedisClient
from controller.core.stats.failures.counts import is_request
from controller.core.stats.folding import PartitionDelta, fold
from controller.core.stats.units import unit_bucket
from tests.integration.stores.test_store import decoded
from tests.integration.unit_counts.test_unit_counts import PARTITIONS, flush_in, store_for

pytestmark = pytest.mark.integration
NAME_A = "KeyError in checkout/cart.py:price"
NAME_B = "TimeoutError in cache/client.py:get"


def exception(
    i: int, unit: str, arm: str, failure: str | None, example: str = ""
) -> dict[str, Any]:
    out = {
        "type": "exception",
        "v": 1,
        "id": f"x{i}",
        "ts": 1_700_000_000_000,
        "flag": "f",
        "flag_version": 1,
        "unit": unit,
        "arm": arm,
    }
    if failure is not None:
        out["failure"] = failure
        out["example"] = example
    return out


def request(i: int, unit: str, arm: str, *, error: bool, failure: str | None) -> dict[str, Any]:
    out = {**exception(i, unit, arm, None), "type": "request", "id": f"r{i}", "error": error}
    return out if failure is None else {**out, "failure": failure}


def failing(seed: int, n: int) -> list[dict[str, Any]]:
    """A in both arms, B in treatment alone, and 24 rare ones and some unnamed in both."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        unit = f"u-{rng.randrange(400)}"
        arm = "treatment" if rng.random() < 0.5 else "control"
        draw = rng.random()
        failure: str | None
        if draw < 0.5:
            failure, example = NAME_A, f"KeyError: 'cart-{i}'"
        elif draw < 0.75:
            failure, example = (NAME_B, "timed out") if arm == "treatment" else (None, "")
        elif draw < 0.9:
            failure, example = f"E{rng.randrange(24)}Error in rare.py:f", ""
        else:
            failure, example = None, ""
        out.append(exception(i, unit, arm, failure, example))
    return out


async def fields_of(client: RedisClient, key: str) -> dict[str, str]:
    """A hash's fields and values as text (the client answers bytes)."""
    raw: dict[bytes | str, bytes | str] = await client.hgetall(key)
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def by_bucket(events: list[dict[str, Any]], arm: str, name: str) -> tuple[int, ...]:
    counts = Counter(
        unit_bucket(e["unit"]) for e in events if e["arm"] == arm and e.get("failure") == name
    )
    return tuple(counts.get(b, 0) for b in range(64))


def by_unit(_i: int, event: dict[str, Any]) -> int:
    unit: str = event["unit"]
    return sum(unit.encode()) % PARTITIONS


async def test_fingerprints_first_seen_are_counted_exactly_by_arm_and_bucket(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    events = failing(3, 2400)
    # The two common ones come first on every partition: kept from their first failure.
    first = [exception(10_000 + k, f"u-{k}", "control", NAME_A) for k in range(3)]
    first += [exception(10_100 + k, f"u-{k}", "treatment", NAME_B) for k in range(3)]
    events = first + events
    await flush_in(store, events, by_unit, batches=9)
    got = await store.read("f", [1])
    a, b = failure_key(NAME_A), failure_key(NAME_B)
    assert got.treatment.failed[a].buckets == by_bucket(events, "treatment", NAME_A)
    assert got.control.failed[a].buckets == by_bucket(events, "control", NAME_A)
    assert got.treatment.failed[b].buckets == by_bucket(events, "treatment", NAME_B)
    assert b not in got.control.failed
    assert got.treatment.failed[a].name == NAME_A
    assert got.treatment.failed[a].example == "KeyError: '<id>'" or "<n>" in (
        got.treatment.failed[a].example
    )
    # Never more named than failed, and never more than the bound a partition keeps.
    for arm in (got.treatment, got.control):
        assert sum(f.total for f in arm.failed.values()) <= arm.exceptions
    assert len({*got.treatment.failed, *got.control.failed}) <= FAILURES_KEPT * PARTITIONS


async def test_a_frequent_fingerprint_takes_the_least_counted_ones_place_and_a_replay_adds_none(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    rare = [exception(k, f"r-{k}", "control", f"Rare{k}Error in r.py:f") for k in range(16)]
    late = [exception(100 + k, f"l-{k}", "treatment", NAME_B) for k in range(40)]
    claim = await store.claim(0)
    sent = [(rare, claim.offset, 1), (late[:10], 1, 2), (late[10:], 2, 3), (late[10:], 2, 3)]
    for batch, expected, next_offset in sent:  # the last one sent again
        delta = PartitionDelta(partition=0, next_offset=next_offset)
        fold([decoded(e) for e in batch], delta.cells)
        await store.flush(delta, epoch=claim.epoch, expected_offset=expected)
    got = await store.read("f", [1])
    # Its first ten came before it was kept (they are in no fingerprint's count); the thirty
    # after, once, though sent twice. The least counted rare one gave way to it.
    assert got.treatment.failed[failure_key(NAME_B)].total == 30
    assert len(got.control.failed) == 16
    assert got.treatment.exceptions == 40


async def test_a_flood_of_distinct_names_stays_within_the_bounds(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    claim = await store.claim(0)
    offset = claim.offset
    for batch in range(10):  # 3,000 names never seen twice, then one that comes often
        events = [
            exception(batch * 300 + k, f"u-{k}", "treatment", f"E{batch}x{k}Error in f.py:g")
            for k in range(300)
        ]
        delta = PartitionDelta(partition=0, next_offset=batch + 1)
        fold([decoded(e) for e in events], delta.cells)
        await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
        offset = batch + 1
    registry = await fields_of(store_client, f"{{{redis_namespace}:events:0}}:f:f")
    kept = [f for f in registry if f.startswith("k:")]
    counted = [f for f in registry if f.startswith("n:")]
    assert len(kept) == FAILURES_KEPT
    assert len(counted) <= FAILURES_KEPT + FAILURE_CANDIDATES
    assert int(registry["ever"]) <= FAILURES_EVER
    arm = await fields_of(store_client, f"{{{redis_namespace}:events:0}}:a:f:1:treatment")
    named = {f.split(".")[0] for f in arm if f.startswith("f:")}
    assert len(named) <= FAILURES_EVER
    got = await store.read("f", [1])
    assert got.treatment.exceptions == 3000
    assert sum(f.total for f in got.treatment.failed.values()) <= 3000


ROUTE = "5xx GET /cart/{id}"


def requesting(seed: int, n: int) -> list[dict[str, Any]]:
    """Failed requests of one route in both arms, more in treatment, some of no name, some
    that did not fail though named; and exceptions named as the route is, which are none of
    them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        unit = f"u-{rng.randrange(300)}"
        arm = "treatment" if rng.random() < 0.5 else "control"
        draw = rng.random()
        if draw < (0.5 if arm == "treatment" else 0.25):
            out.append(request(i, unit, arm, error=True, failure=ROUTE))
        elif draw < 0.6:
            out.append(request(i, unit, arm, error=True, failure=None))
        elif draw < 0.8:
            out.append(request(i, unit, arm, error=False, failure=ROUTE))
        else:
            out.append(exception(i, unit, arm, ROUTE))
    return out


def requests_by_bucket(events: list[dict[str, Any]], arm: str) -> tuple[int, ...]:
    named = [e for e in events if e["type"] == "request" and e["error"] and "failure" in e]
    counts = Counter(unit_bucket(e["unit"]) for e in named if e["arm"] == arm)
    return tuple(counts.get(b, 0) for b in range(64))


async def test_a_named_failed_request_is_counted_once_by_arm_and_bucket_and_is_no_exception(
    store_client: RedisClient, redis_namespace: str
) -> None:
    store = store_for(store_client, redis_namespace)
    events = requesting(5, 1800)
    for p in range(PARTITIONS):
        mine = [decoded(e) for e in events if by_unit(0, e) == p]
        claim = await store.claim(p)
        offset = claim.offset
        for start in range(0, len(mine), 100):
            for _ in range(2):  # each batch flushed again, as after a lost answer: once
                delta = PartitionDelta(partition=p, next_offset=(offset or 0) + 1)
                fold(mine[start : start + 100], delta.cells)
                await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
            offset = delta.next_offset
    got = await store.read("f", [1])
    key = request_key(ROUTE)
    assert is_request(key)
    assert key != failure_key(ROUTE)
    for arm in ("treatment", "control"):
        counted = getattr(got, arm)
        assert counted.failed[key].buckets == requests_by_bucket(events, arm)
        assert counted.failed[key].name == ROUTE
        assert counted.failed[key].example == ""
        # the exceptions of the same name are a fingerprint of their own
        exceptions = by_bucket([e for e in events if e["type"] == "exception"], arm, ROUTE)
        assert counted.failed[failure_key(ROUTE)].buckets == exceptions
        assert counted.errors == sum(e["arm"] == arm and e.get("error") is True for e in events)
        # named exceptions never outnumber the arm's exceptions; the requests are apart
        named = [f.total for k, f in counted.failed.items() if not is_request(k)]
        assert sum(named) <= counted.exceptions == sum(exceptions)
    assert got.treatment.failed[key].total > got.control.failed[key].total > 0
