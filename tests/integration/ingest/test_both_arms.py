"""Units seen in both arms, counted by the real flush script on a real Redis and judged
by the gate: a seeded stream where 2% of the units see both arms trips the check, 0.5% and
0.01% do not, a replayed batch counts nothing twice, and a full sample stops growing."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

from controller.adapters.redis import aggregates as redis_aggregates
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient
from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
from controller.core.stats.aggregates import WATCH_ONE_IN_BITS, FlagAggregates, watched_members
from controller.core.stats.folding import PartitionDelta, fold
from controller.core.wire.bucketing import assign
from controller.core.wire.decoding import ExposureIn
from controller.core.wire.messages import Arm
from controller.ports import FlushOutcome
from controller.settings import RedisSettings
from tests.integration.rig import drop_keys
from tests.integration.stores.test_store import store_for
from tests.support.documents import as_read
from tests.support.reference import partition_of

pytestmark = pytest.mark.integration
PARTITIONS = 4
UNITS = 20_000
"""About 2,500 units per arm and partition: every unit drawn is watched (below the cap)."""
BATCH = 5_000
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TS_MS = int(T0.timestamp() * 1000)
PLAN = Plan(
    stages=[Stage(percent=50, min_duration=timedelta(0), min_units_per_arm=0), Stage(percent=100)]
)


@pytest.fixture
async def client(redis_url: str, redis_namespace: str) -> AsyncIterator[RedisClient]:
    async with connect(RedisSettings(url=redis_url)) as found:
        yield found
        await drop_keys(found, redis_namespace)


def stream(share: float, seed: int, units: int = UNITS) -> list[ExposureIn]:
    """One exposure per unit in its bucketed arm, and for ``share`` of the units (chosen
    with ``seed``) a second exposure in the other arm, shuffled."""
    rng = random.Random(seed)
    crossed = set(rng.sample(range(units), round(units * share)))
    events = []
    for n in range(units):
        unit = f"user-{n}"
        arm = assign("f", "s", unit, 50)
        events.append(exposure(unit, arm, n))
        if n in crossed:
            other = Arm.CONTROL if arm is Arm.TREATMENT else Arm.TREATMENT
            events.append(exposure(unit, other, units + n))
    rng.shuffle(events)
    return events


def exposure(unit: str, arm: Arm, n: int) -> ExposureIn:
    side: Literal["treatment", "control"] = "treatment" if arm is Arm.TREATMENT else "control"
    return ExposureIn(v=1, id=f"e{n}", ts=TS_MS, flag="f", unit=unit, arm=side, flag_version=1)


async def flushed(store: RedisAggregateStore, events: list[ExposureIn]) -> FlagAggregates:
    """Every event flushed in batches per partition, each batch flushed twice (a replay)."""
    claims = {p: await store.claim(p) for p in range(PARTITIONS)}
    offsets: dict[int, int | None] = dict.fromkeys(range(PARTITIONS))
    for start in range(0, len(events), BATCH):
        by_partition: dict[int, list[ExposureIn]] = {}
        for event in events[start : start + BATCH]:
            by_partition.setdefault(partition_of(event.unit, PARTITIONS), []).append(event)
        for p, batch in by_partition.items():
            delta = PartitionDelta(partition=p, next_offset=(offsets[p] or 0) + len(batch))
            fold(batch, delta.cells)
            for outcome in (FlushOutcome.APPLIED, FlushOutcome.REPLAYED):
                got = await store.flush(delta, epoch=claims[p].epoch, expected_offset=offsets[p])
                assert got is outcome
            offsets[p] = delta.next_offset
    return await store.read("f", [1])


def running() -> Rollout:
    return Rollout(
        flag="f",
        rollout_id="r",
        plan=PLAN,
        phase=Phase.RUNNING,
        stage=0,
        stage_started_at=T0,
        salt="s",
        flag_version=1,
        stage_versions={0: [1]},
        started_at=T0,
        updated_at=T0,
    )


@pytest.mark.parametrize(("share", "trips"), [(0.02, True), (0.005, False), (0.0001, False)])
async def test_a_seeded_stream_trips_the_check_at_two_percent_not_below_the_limit(
    client: RedisClient, redis_namespace: str, share: float, trips: bool
) -> None:
    events = stream(share, seed=28)
    data = await flushed(store_for(client, redis_namespace), events)
    # The counts are exact on the sample: every watched unit once per arm it was seen in,
    # and the crossings; the sample's share of crossings is the stream's, within its error.
    units = {e.unit for e in events if watched_members([e.unit])}
    seen = {(e.unit, e.arm) for e in events if e.unit in units}
    both = len(seen) - len(units)
    assert (data.watched, data.both_arms) == (len(seen), both)
    assert len(events) - UNITS == round(UNITS * share)
    assert abs(both / len(units) - share) <= 3 * (share / len(units)) ** 0.5 + 1 / len(units)
    verdict = evaluate(running(), data, T0 + timedelta(minutes=1))
    tripped = verdict.applied is not None and verdict.applied.trigger == "units_in_both_arms"
    assert tripped is trips, (verdict.kind, verdict.reason, data.both_arms, data.watched_units)
    assert as_read(verdict.evidence)["both_arms"] == {"units": both, "watched": len(units)}
    if trips:  # the default policy warns: the stage holds, with the evidence
        assert verdict.kind is VerdictKind.HOLD
        assert "seen in both arms" in verdict.reason
    else:
        assert verdict.kind is VerdictKind.ADVANCE, verdict.reason


async def test_a_full_sample_stops_growing_in_both_arms(
    client: RedisClient, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap the sample is the first units drawn of the version, still judged by
    share (a cap of 1,024 here, so that the stream passes it with fewer units)."""
    cap = 1024
    monkeypatch.setattr(redis_aggregates, "WATCH_CAP", cap)
    units = 2 * cap * 2**WATCH_ONE_IN_BITS * PARTITIONS + 8_000
    data = await flushed(store_for(client, redis_namespace), stream(0.02, 7, units=units))
    drawn = len(watched_members(f"user-{n}" for n in range(units)))
    assert data.watched_units < drawn
    assert data.watched <= 2 * (cap + BATCH) * PARTITIONS
    share = data.both_arms / data.watched_units
    assert 0.01 < share < 0.03
