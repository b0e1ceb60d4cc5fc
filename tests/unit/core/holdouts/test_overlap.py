"""One unit under several flags: its units counted once, and the floor its variance keeps."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from controller.core.holdouts.overlap import Overlap, floored, overlap_of
from controller.core.stats.sequential import SequentialResult, difference_test


@pytest.mark.parametrize(
    ("per_flag", "union", "distinct", "ratio", "bound"),
    [
        ([1_000, 1_000], 1_000, 1_000, 2.0, 2.0),  # the same people under both flags
        ([1_000, 1_000], 2_000, 2_000, 1.0, 1.0),  # nobody under both
        ([1_000, 1_000], 1_500, 1_500, 4 / 3, 1.5),  # half of each under both
        ([1_000] * 3, 1_000, 1_000, 3.0, 3.0),
        ([2_000, 1_900, 1_922], 2_840, 2_840, 5_822 / 2_840, (2_840 + 2_982 * 4) / 5_822),
        ([1_000, 1_000], 2_010, 2_000, 1.0, 1.0),  # a HyperLogLog's error above the sum
        ([1_000, 400], 990, 1_000, 1.4, (1_000 + 400 * 3) / 1_400),  # ...below one flag's
        ([1_000, 400], None, 1_400, 1.0, 1.0),  # no union read: different people
        ([0, 0], 0, 0, 1.0, 1.0),
        ([], None, 0, 1.0, 1.0),
    ],
)
def test_a_groups_overlap_from_each_flags_units_and_their_union(
    per_flag: list[int], union: int | None, distinct: int, ratio: float, bound: float
) -> None:
    found = overlap_of(per_flag, union)
    assert found.distinct == distinct
    assert found.ratio == pytest.approx(ratio)
    assert found.bound == pytest.approx(bound)
    assert 1.0 <= found.ratio <= found.bound <= max(1, len(per_flag))


@pytest.mark.parametrize(("flags", "seed"), [(2, 1), (3, 2), (5, 3), (10, 4)])
def test_the_bound_holds_however_units_fall_under_the_flags(flags: int, seed: int) -> None:
    # Units under 1 to K flags, some spread evenly, some crowded under all of them
    rng = random.Random(seed)
    for _ in range(200):
        crowd = rng.random()
        ks = [flags if rng.random() < crowd else rng.randint(1, flags) for _ in range(500)]
        counted, distinct = sum(ks), len(ks)
        weight = sum(k * k for k in ks) / counted  # E[k²] / E[k]: events copied per flag
        group = Overlap(counted, distinct, flags)
        assert group.ratio <= weight + 1e-12
        assert weight <= group.bound + 1e-12


def unit_result(effect: float, variance: float = 4e-6) -> SequentialResult:
    found = difference_test(delta=0.004, variance=variance, n=3_000, direction="lower_is_better")
    return replace(found, unit_of_analysis="unit", design_effect=effect, widening=effect**0.5)


@pytest.mark.parametrize(
    ("effect", "factor", "scaled"),
    [
        (1.0, 2.0, 2.0),  # as if independent: the floor takes it to twice that
        (1.5, 2.0, 2.0 / 1.5),
        (2.0, 2.0, 1.0),  # at the floor already
        (3.0, 2.0, 1.0),  # above it: the buckets' variance holds
        (1.2, 1.0, 1.0),  # no overlap
    ],
)
def test_the_variance_keeps_at_least_the_floor_times_the_independent_one(
    effect: float, factor: float, scaled: float
) -> None:
    before = unit_result(effect)
    after = floored(before, factor)
    assert after.variance == pytest.approx(before.variance * scaled)
    assert after.variance / (before.variance / effect) >= factor - 1e-12
    assert (after.delta, after.n, after.alpha) == (before.delta, before.n, before.alpha)
    assert after.unit_of_analysis == "unit"
    assert after.half_width >= before.half_width
    widened = after.half_width / before.half_width
    assert after.widening == pytest.approx(effect**0.5 * widened)
    assert (after == before) is (scaled == 1.0)


def test_a_result_not_on_units_or_without_a_design_effect_is_left_alone() -> None:
    on_requests = replace(unit_result(1.0), unit_of_analysis="request", design_effect=None)
    assert floored(on_requests, 3.0) == on_requests
    unknown = replace(unit_result(1.0), design_effect=None)
    assert floored(unknown, 3.0) == unknown
