"""Variance on the unit of assignment: the buckets of units and the delta method over them."""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import replace

import orjson
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.stats import units
from controller.core.stats.aggregates import ArmAggregate, CellDelta, CellKey, FlagAggregates
from controller.core.stats.folding import fold
from controller.core.stats.guardrails import guardrail_result, units_waiting
from controller.core.stats.units import (
    ERRORS,
    KIND_COUNT,
    MIN_CLUSTERS,
    REQUESTS,
    UNIT_BUCKETS,
    UnitBuckets,
    pooled_ratio_variance,
    ratio_variance,
    share_design_effect,
    unit_bucket,
)
from controller.core.wire.bucketing import assign
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.core.wire.messages import Arm

PLAN = Plan(stages=[Stage(percent=50), Stage(percent=100)], guardrails=[])
ERRORS_GUARD = Guardrail(metric="error_rate")


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("u1", zlib.crc32(b"u1") % UNIT_BUCKETS),
        ("", 0),
        ("é", zlib.crc32("é".encode()) % UNIT_BUCKETS),
        ("\ud800", zlib.crc32(b"\xed\xa0\x80") % UNIT_BUCKETS),  # a lone surrogate hashes too
    ],
)
def test_a_units_bucket_is_a_crc32_of_its_id(unit: str, expected: int) -> None:
    assert unit_bucket(unit) == expected


def test_buckets_are_uniform_within_an_arm_whatever_the_split() -> None:
    """The bucket hash is independent of assignment: a 1% arm fills every bucket evenly."""
    treated = [u for u in (f"user-{i}" for i in range(200_000)) if assign("f", "s", u, 1.0).value
               == "treatment"]  # fmt: skip
    counts = [0] * UNIT_BUCKETS
    for unit in treated:
        counts[unit_bucket(unit)] += 1
    expected = len(treated) / UNIT_BUCKETS
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert 1_800 < len(treated) < 2_200
    assert chi2 < 110  # 63 degrees of freedom: p < 0.001 beyond 103


@pytest.mark.parametrize(
    ("numerators", "denominators", "expected"),
    [
        # Fewer buckets with data than MIN_CLUSTERS: no estimate.
        ([1.0] * 3, [10.0] * 3, math.inf),
        ([0.0] * 10, [0.0] * 10, math.inf),
        # Every bucket at the same rate: no variance.
        ([1.0] * 10, [10.0] * 10, 0.0),
        # Half the buckets at 0.2, half at 0: R = 0.1, each (Y - R·N)² = 1, sum 10,
        # times G/(G-1) = 10/9, over (ΣN)² = 100²: 1/900.
        ([2.0] * 5 + [0.0] * 5, [10.0] * 10, 10 / 9 * 10 / 100**2),
    ],
)
def test_ratio_variance_is_the_sandwich_over_buckets(
    numerators: list[float], denominators: list[float], expected: float
) -> None:
    got = ratio_variance(numerators, denominators)
    assert got == pytest.approx(expected) if math.isfinite(expected) else math.isinf(got)


@pytest.mark.parametrize("share", [0.3, 0.5, 0.8, 0.95, 0.99])
def test_one_bucket_holding_most_of_an_arm_cannot_decide_its_test(share: float) -> None:
    # 63 buckets at 2% errors, one at 20% sending `share` of the arm's requests: the arm's
    # rate moves by share * 18 points, all of it that one bucket's doing. Its residual
    # shrinks by (1 - share) as its weight grows (the sandwich's z ~ 1/(1 - share)); taken
    # as the jackknife takes it, the variance keeps z near 1, below any boundary.
    rest = [100.0] * 63
    heavy = share / (1 - share) * sum(rest)
    requests = [heavy, *rest]
    errors = [0.2 * heavy, *(0.02 * n for n in rest)]
    rate = sum(errors) / sum(requests)
    z = (rate - 0.02) / math.sqrt(ratio_variance(errors, requests))
    assert 0 < z < 1.05  # never near a boundary (1.64 one-sided at 5%)
    plain = 64 / 63 * sum((y - rate * n) ** 2 for y, n in zip(errors, requests, strict=True))
    plain_z = (rate - 0.02) / math.sqrt(plain / sum(requests) ** 2)
    assert plain_z == pytest.approx(1 / (1 - share), rel=0.05)


def test_buckets_of_equal_size_keep_the_sandwich_exactly() -> None:
    rng = random.Random(11)
    requests = [50.0] * UNIT_BUCKETS
    errors = [float(rng.randint(0, 5)) for _ in requests]
    rate = sum(errors) / sum(requests)
    plain = sum((y - rate * n) ** 2 for y, n in zip(errors, requests, strict=True))
    expected = UNIT_BUCKETS / (UNIT_BUCKETS - 1) * plain / sum(requests) ** 2
    assert ratio_variance(errors, requests) == pytest.approx(expected, rel=1e-12)


def _clustered(rng: random.Random, units_n: int, per_unit: int, rho_all: bool) -> list[float]:
    """Errors and requests per bucket: each unit sends ``per_unit`` requests; with
    ``rho_all`` a unit fails all or none of them (intra-unit correlation 1), else each
    request fails on its own."""
    errors = [0.0] * UNIT_BUCKETS
    requests = [0.0] * UNIT_BUCKETS
    for i in range(units_n):
        b = unit_bucket(f"u{i}")
        requests[b] += per_unit
        if rho_all:
            errors[b] += per_unit if rng.random() < 0.05 else 0
        else:
            errors[b] += sum(rng.random() < 0.05 for _ in range(per_unit))
    return errors + requests


@pytest.mark.parametrize(
    ("rho_all", "low", "high"),
    [
        (False, 0.6, 1.5),  # independent requests: about 1
        (True, 6.0, 15.0),  # all-or-nothing units of 10 requests: 1 + (10 - 1)·1 = 10
    ],
)
def test_the_design_effect_is_about_one_plus_m_minus_one_rho(
    rho_all: bool, low: float, high: float
) -> None:
    both = _clustered(random.Random(7), 20_000, 10, rho_all)
    errors, requests = both[:UNIT_BUCKETS], both[UNIT_BUCKETS:]
    deff = share_design_effect(errors, requests)
    assert deff is not None
    assert low < deff < high


def test_pooled_variance_is_shared_by_identical_arms_and_scaled_to_each_arms_units() -> None:
    rng = random.Random(3)
    both = _clustered(rng, 10_000, 5, rho_all=True)
    arm = (both[:UNIT_BUCKETS], both[UNIT_BUCKETS:])
    same = pooled_ratio_variance([(*arm, 10_000), (*arm, 10_000)])
    small = pooled_ratio_variance([(*arm, 100), (*arm, 10_000)])
    # σ²/μ² = spread·units/total²: the same buckets over fewer units, and each arm's share
    # is that over its own units.
    units_ratio = (100 + 10_000) / 20_000
    assert small / same == pytest.approx(units_ratio * (1 / 100 + 1 / 10_000) / (2 / 10_000))
    assert ratio_variance(*arm) * 2 == pytest.approx(same, rel=0.05)


def _event(kind: str, unit: str, arm: Arm, **extra: object) -> InEvent:
    body = {"type": kind, "v": 1, "id": f"{unit}-{extra}-{random.random()}", "ts": 0,
            "flag": "f", "flag_version": 1, "unit": unit, "arm": arm.value, **extra}  # fmt: skip
    decoded = decode_event(orjson.dumps(body), max_bytes=9999)
    assert not isinstance(decoded, Rejection), decoded
    return decoded


def _arms(events: list[InEvent]) -> FlagAggregates:
    """The events folded, as the store sums and reads them."""
    cells: dict[CellKey, CellDelta] = {}
    fold(events, cells)
    arms = []
    for arm in (Arm.TREATMENT, Arm.CONTROL):
        cell = cells[("f", 1, arm)]
        fields = {**cell.counters(), **cell.floats()}
        arms.append(ArmAggregate.from_fields(fields, units=len(cell.units)))
    return FlagAggregates("f", frozenset({1}), arms[0], arms[1])


def test_folded_events_count_in_their_units_buckets() -> None:
    events = [
        _event("request", "a", Arm.TREATMENT, error=True, latency_ms=12.0),
        _event("request", "a", Arm.TREATMENT, error=False, latency_ms=300.0),
        _event("exposure", "b", Arm.TREATMENT),
        _event("conversion", "b", Arm.TREATMENT, value=2.5),
        _event("request", "c", Arm.CONTROL, error=False),
    ]
    data = _arms(events)
    t = data.treatment.buckets
    assert t is not None
    a, b = unit_bucket("a") * KIND_COUNT, unit_bucket("b") * KIND_COUNT
    assert (t.totals[a + REQUESTS], t.totals[a + ERRORS]) == (2.0, 1.0)
    assert t.totals[b + units.EXPOSURES] == 1.0
    assert t.totals[b + units.VALUE_SUM] == 2.5
    assert sum(t.latency_counts()) == 2
    assert t.total(REQUESTS) == data.treatment.requests


def _failing_units(rng: random.Random, arm: Arm, n: int, per_unit: int) -> list[InEvent]:
    """``n`` units of ``per_unit`` requests, 5% of them failing every request."""
    out = []
    for i in range(n):
        failing = rng.random() < 0.05
        unit = f"{arm.value}-{i}"
        out += [_event("request", unit, arm, error=failing) for _ in range(per_unit)]
    return out


def test_a_guardrail_on_clustered_events_is_tested_on_units_and_says_how_much_wider() -> None:
    rng = random.Random(11)
    events = _failing_units(rng, Arm.TREATMENT, 400, 10) + _failing_units(rng, Arm.CONTROL, 400, 10)
    data = _arms(events)
    result = guardrail_result(ERRORS_GUARD, data, PLAN)
    assert result is not None
    assert result.unit_of_analysis == "unit"
    assert result.n == 800  # units, not the 8,000 requests
    assert result.design_effect is not None
    assert result.design_effect > 4  # all-or-nothing units of 10 requests: about 10
    assert result.widening is not None
    assert result.widening > 1.5
    plain = replace(
        data,
        treatment=replace(data.treatment, buckets=None),
        control=replace(data.control, buckets=None),
    )
    independent = guardrail_result(ERRORS_GUARD, plain, PLAN)
    assert independent is not None
    assert independent.unit_of_analysis == "request"
    assert independent.n == 8000
    assert result.half_width > independent.half_width


def test_arms_with_too_few_units_to_vary_are_not_yet_tested() -> None:
    rng = random.Random(5)
    few = MIN_CLUSTERS // 2
    events = _failing_units(rng, Arm.TREATMENT, few, 200) + _failing_units(
        rng, Arm.CONTROL, 400, 10
    )
    assert guardrail_result(ERRORS_GUARD, _arms(events), PLAN) is None


def test_data_counted_before_buckets_existed_waits_for_bucketed_data() -> None:
    """A stage that began before an upgrade: its events have no buckets (the store reads
    empty ones); the guardrail is not tested until events counted by unit arrive."""
    legacy = ArmAggregate(units=500, requests=5000, errors=100, buckets=UnitBuckets.empty())
    data = FlagAggregates("f", frozenset({1}), legacy, legacy)
    assert guardrail_result(ERRORS_GUARD, data, PLAN) is None


def test_a_stage_partly_counted_before_buckets_takes_its_design_effect_from_the_rest() -> None:
    rng = random.Random(13)
    fresh = _arms(
        _failing_units(rng, Arm.TREATMENT, 400, 10) + _failing_units(rng, Arm.CONTROL, 400, 10)
    )
    on_fresh = guardrail_result(ERRORS_GUARD, fresh, PLAN)
    assert on_fresh is not None
    assert on_fresh.design_effect is not None

    def doubled(arm: ArmAggregate) -> ArmAggregate:  # as much again, counted before buckets
        return replace(arm, requests=2 * arm.requests, errors=2 * arm.errors, units=2 * arm.units)

    mixed = replace(fresh, treatment=doubled(fresh.treatment), control=doubled(fresh.control))
    on_mixed = guardrail_result(ERRORS_GUARD, mixed, PLAN)
    assert on_mixed is not None
    # The same design effect, applied to the variance of all the data.
    assert on_mixed.design_effect == pytest.approx(on_fresh.design_effect, rel=0.05)
    assert on_mixed.variance == pytest.approx(on_fresh.variance / 2, rel=0.05)


def test_a_guardrail_waiting_for_units_says_so() -> None:
    rng = random.Random(5)
    few = _arms(
        _failing_units(rng, Arm.TREATMENT, 3, 200) + _failing_units(rng, Arm.CONTROL, 400, 10)
    )
    assert units_waiting(ERRORS_GUARD, few).startswith("3 of 8 buckets of units hold data in")
    legacy = ArmAggregate(units=500, requests=5000, errors=100, buckets=UnitBuckets.empty())
    old = FlagAggregates("f", frozenset({1}), legacy, legacy)
    assert units_waiting(ERRORS_GUARD, old).startswith("no events counted by unit yet")


@pytest.mark.parametrize("first_bin", [-1, 0, 1, 7, units.LATENCY_BINS - 1, units.LATENCY_BINS, 99])
def test_latencies_from_a_bin_up_are_each_buckets_sum_however_often_asked(first_bin: int) -> None:
    rng = random.Random(first_bin)
    totals = [float(rng.randrange(0, 50)) for _ in range(units.UNIT_BUCKETS * units.KIND_COUNT)]
    buckets = units.UnitBuckets(tuple(totals))
    start = min(max(first_bin, 0), units.LATENCY_BINS)
    want = [
        math.fsum(totals[b * units.KIND_COUNT + units.LATENCY + start : (b + 1) * units.KIND_COUNT])
        for b in range(units.UNIT_BUCKETS)
    ]
    assert buckets.latency_at_or_above(first_bin) == want
    buckets.latency_at_or_above(first_bin).append(1.0)  # a caller's copy, not what is kept
    assert buckets.latency_at_or_above(first_bin) == want
    # What was worked out is no part of the value: equal to a fresh one, and hashed alike.
    fresh = units.UnitBuckets(tuple(totals))
    assert buckets == fresh
    assert hash(buckets) == hash(fresh)


def test_arms_whose_units_are_not_counted_are_not_tested_on_them() -> None:
    """Buckets without a count of units (N = 0) bound nothing: not yet tested, never passed."""
    rng = random.Random(17)
    data = _arms(
        _failing_units(rng, Arm.TREATMENT, 400, 10) + _failing_units(rng, Arm.CONTROL, 400, 10)
    )
    uncounted = replace(
        data,
        treatment=replace(data.treatment, units=0),
        control=replace(data.control, units=0),
    )
    assert guardrail_result(ERRORS_GUARD, uncounted, PLAN) is None
