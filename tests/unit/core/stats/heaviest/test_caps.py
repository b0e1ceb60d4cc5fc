"""Caps on each unit's requests: the rule, and the arithmetic on arms and buckets."""

from __future__ import annotations

import pytest

from controller.core.stats import (
    CAP_MULTIPLE,
    HEAVIEST_KEPT,
    ArmAggregate,
    FlagAggregates,
    Heaviest,
    UnitBuckets,
    UnitCount,
    capped,
)
from controller.core.stats.heaviest.caps import default_cap, effective_cap
from controller.core.stats.units import ERRORS, KIND_COUNT, REQUESTS, UNIT_BUCKETS, unit_bucket


def arm(units: int, requests: int, errors: int, listed: tuple[UnitCount, ...] = ()) -> ArmAggregate:
    """An arm whose unlisted requests and errors are spread over the buckets, and each listed
    unit's counted in its own bucket."""
    totals = [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    rest_n = requests - sum(u.requests for u in listed)
    rest_e = errors - sum(u.errors for u in listed)
    for b in range(UNIT_BUCKETS):
        totals[b * KIND_COUNT + REQUESTS] = rest_n / UNIT_BUCKETS
        totals[b * KIND_COUNT + ERRORS] = rest_e / UNIT_BUCKETS
    for u in listed:
        base = unit_bucket(u.unit) * KIND_COUNT
        totals[base + REQUESTS] += u.requests
        totals[base + ERRORS] += u.errors
    return ArmAggregate(
        units=units,
        requests=requests,
        errors=errors,
        buckets=UnitBuckets(tuple(totals)),
        heaviest=Heaviest(tuple(sorted(listed, key=lambda u: (-u.requests, u.unit)))),
    )


def flag(treatment: ArmAggregate, control: ArmAggregate) -> FlagAggregates:
    return FlagAggregates("f", frozenset({1}), treatment, control)


@pytest.mark.parametrize(
    ("treatment", "control", "cap"),
    [
        # 1,000 + 99,000 units, 20 requests each besides the listed: 100 x 20.
        (arm(1_000, 20_000, 200), arm(99_000, 1_980_000, 0), CAP_MULTIPLE * 20),
        # a bot listed in treatment is left out of the mean: still 20 a unit.
        (
            arm(1_001, 70_000, 200, (UnitCount("bot", 50_000, 0),)),
            arm(99_000, 1_980_000, 0),
            CAP_MULTIPLE * 20,
        ),
        # pooled over both arms: (1,000 x 10 + 1,000 x 30) / 2,000 = 20.
        (arm(1_000, 10_000, 0), arm(1_000, 30_000, 0), CAP_MULTIPLE * 20),
        # every request listed: nothing to take a mean of.
        (arm(1, 500, 0, (UnitCount("a", 500, 0),)), arm(0, 0, 0), None),
    ],
)
def test_the_default_cap_is_a_multiple_of_the_unlisted_units_mean(
    treatment: ArmAggregate, control: ArmAggregate, cap: int | None
) -> None:
    assert default_cap(flag(treatment, control)) == cap


def test_a_full_list_raises_the_cap_to_what_it_may_leave_out() -> None:
    full = tuple(UnitCount(f"u{i}", 3_000 - i, 0) for i in range(HEAVIEST_KEPT))
    control = arm(5_000, 200_000, 0, full)
    data = flag(arm(100, 2_000, 0), control)
    floor = full[-1].requests
    assert effective_cap(1_000, data) == floor  # no unit over 1,000 escapes the cap in control
    assert effective_cap(floor + 1, data) == floor + 1
    partial = Heaviest(control.heaviest.units, unlisted_at_most=40)
    wider = flag(arm(100, 2_000, 0), ArmAggregate(requests=200_000, heaviest=partial))
    assert effective_cap(1_000, wider) == floor + 40


@pytest.mark.parametrize(
    ("n", "e", "cap", "dropped_n", "dropped_e"),
    [
        (10_000, 2_000, 1_000, 9_000, 1_800),  # keeps its 20%: 200 of 1,000
        (10_000, 0, 1_000, 9_000, 0),
        (3, 3, 1, 2, 2),
        (1_000, 1, 999, 1, 0),  # 1 x (1 - 999/1000) rounds to no error
        (1_000, 1_000, 1_000, 0, 0),  # at the cap: untouched
    ],
)
def test_a_capped_unit_keeps_its_own_rate(
    n: int, e: int, cap: int, dropped_n: int, dropped_e: int
) -> None:
    unit = UnitCount("bot-7", n, e)
    treatment = arm(1_000, 20_000 + n, 200 + e, (unit,))
    data, capping = capped(flag(treatment, arm(1_000, 20_000, 200)), cap)
    got = data.treatment
    assert (treatment.requests - got.requests, treatment.errors - got.errors) == (
        dropped_n,
        dropped_e,
    )
    assert [(c.unit, c.dropped_requests, c.dropped_errors) for c in capping.units] == (
        [("bot-7", dropped_n, dropped_e)] if dropped_n else []
    )


def test_the_bucket_and_the_arm_move_by_the_same_amounts() -> None:
    units = (
        UnitCount("bot-7", 40_000, 8_000),
        UnitCount("crawler", 9_000, 0),
        UnitCount("person", 500, 5),
    )
    treatment = arm(1_003, 69_500, 8_205, units)
    control = arm(1_000, 20_000, 200)
    data, capping = capped(flag(treatment, control), 1_000)
    before, after = treatment.buckets, data.treatment.buckets
    assert before is not None
    assert after is not None
    for kind, total in ((REQUESTS, "requests"), (ERRORS, "errors")):
        moved = before.total(kind) - after.total(kind)
        assert moved == getattr(treatment, total) - getattr(data.treatment, total)
        assert after.total(kind) == getattr(data.treatment, total)
    for c in capping.units:
        b = unit_bucket(c.unit)
        assert before.column(REQUESTS)[b] - after.column(REQUESTS)[b] == c.dropped_requests
        assert before.column(ERRORS)[b] - after.column(ERRORS)[b] == c.dropped_errors
    assert [c.unit for c in capping.units] == ["bot-7", "crawler"]
    assert data.control == control  # nothing over the cap there
    assert data.treatment.heaviest.units[:2] == (
        UnitCount("bot-7", 1_000, 200),
        UnitCount("crawler", 1_000, 0),
    )


def test_no_cap_leaves_the_counts_as_they_are() -> None:
    data = flag(arm(1, 100, 0, (UnitCount("a", 100, 0),)), arm(1, 100, 0))
    assert capped(data, None) == (data, capped(data, None)[1])
    assert capped(data, None)[1].cap is None
