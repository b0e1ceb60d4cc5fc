"""The preview of a small arm: averaged over how many heavy or failing units land in it."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from controller.core.rollouts import Guardrail, Plan, Stage
from controller.core.stats.arm_contents import MIXED_UNITS, arm_contents, estimate_degrees
from controller.core.stats.power import detectable
from controller.core.stats.regressing import Arms, Failing, Traffic, arms_at, failing_of

ERRORS = Guardrail(metric="error_rate")
HEAVY = Traffic(
    requests_per_s=31.3, requests_per_unit=18.8, error_rate=0.02, heavy_share=0.01,
    heavy_requests=1150.0,
)  # fmt: skip
"""1% of units send 1,150 requests each, the rest 8 (about 1,000 units in 10 minutes)."""
FAILING = Traffic(
    requests_per_s=27.8, requests_per_unit=7.6, error_rate=0.0198, design_effect=7.51,
    failing_share=0.02, failing_rate=0.5,
)  # fmt: skip
"""2% of units fail half their requests, the rest 1%: a design effect of 7.5."""


def _plan(percent: float, minutes: int) -> Plan:
    stage = Stage(percent=percent, min_duration=timedelta(minutes=minutes), min_units_per_arm=0)
    return Plan(stages=[stage], guardrails=[ERRORS], alpha=0.05)


def _effect(traffic: Traffic, percent: float, minutes: int) -> float | None:
    return detectable(ERRORS, percent, minutes * 60.0, traffic, _plan(percent, minutes)).effect


def _plain(traffic: Traffic) -> Traffic:
    return replace(traffic, heavy_share=0.0, heavy_requests=0.0, failing_share=0.0)


@pytest.mark.parametrize(
    ("percent", "minutes", "low", "high"),
    [
        # 75 treated units: no heavy one in half the stages, so the arm's requests are a
        # fraction of the expected and the figure grows.
        (5.0, 15, 1.2, 2.0),
        (10.0, 10, 1.1, 2.0),
        # Thousands of units in each arm: their count hardly varies.
        (50.0, 60, 0.97, 1.05),
    ],
)
def test_heavy_units_raise_the_figure_of_a_small_arm_only(
    percent: float, minutes: int, low: float, high: float
) -> None:
    mixed, expected = _effect(HEAVY, percent, minutes), _effect(_plain(HEAVY), percent, minutes)
    assert mixed is not None
    assert expected is not None
    assert low <= mixed / expected <= high, (mixed, expected)


def test_a_stage_whose_chance_hardly_grows_with_the_regression_shows_no_figure() -> None:
    """p99 of a 5% arm of 10 minutes with heavy units: read from its few slowest requests,
    with stalls past them, whatever the regression's size; half the smallest size seen 4 times
    in 5 is seen about as often, and a figure would promise what half of it gets too."""
    traffic = replace(HEAVY, requests_per_s=55.5, latency_median_ms=2.9, latency_sigma=1.42)
    p99 = Guardrail(metric="latency_p99")
    stage = Stage(percent=5.0, min_duration=timedelta(minutes=10), min_units_per_arm=0)
    found = detectable(p99, 5.0, 600.0, traffic, Plan(stages=[stage], guardrails=[p99]))
    assert found.effect is None
    assert found.reason.startswith("no figure: a regression half the size of +")
    assert "cannot tell how large one is" in found.reason
    longer = detectable(p99, 5.0, 3600.0, traffic, Plan(stages=[stage], guardrails=[p99]))
    assert longer.effect is not None  # an hour of the same traffic sizes it


def test_an_arm_tested_only_when_a_heavy_unit_lands_in_it_detects_nothing_and_says_why() -> None:
    traffic = replace(HEAVY, error_rate=0.005)
    found = detectable(ERRORS, 2.0, 600.0, traffic, _plan(2.0, 10))
    assert found.effect is None
    assert "only when a heavy unit lands in it (18% of stages)" in found.reason
    assert _effect(_plain(traffic), 2.0, 10) is not None  # the expected arm promised one


@pytest.mark.parametrize(
    ("percent", "minutes", "low", "high"),
    [
        # A regression of several times the base: the failing units saturate, the extra
        # errors come from ordinary units, and few failing units are in a 1-2% arm.
        (1.0, 60, 0.5, 0.85),
        (2.0, 10, 0.4, 0.85),
        # Under doubling, on a large arm: the failing units fail more, and apart from the
        # rest by more, than the base's design effect says.
        (50.0, 60, 1.05, 1.25),
    ],
)
def test_failing_units_shrink_a_large_regressions_figure_and_grow_a_small_ones(
    percent: float, minutes: int, low: float, high: float
) -> None:
    mixed, kept = _effect(FAILING, percent, minutes), _effect(_plain(FAILING), percent, minutes)
    assert mixed is not None
    assert kept is not None
    assert low <= mixed / kept <= high, (mixed, kept)


@pytest.mark.parametrize("rate", [0.02, 0.03, 0.1, 0.5, 1.0])
def test_failing_units_keep_the_rate_and_saturate_at_one(rate: float) -> None:
    failing = Failing(share=0.02, high=0.5, low=0.01, weight=20.0)
    high, low = failing.after(rate)
    assert 0.02 * high + 0.98 * low == pytest.approx(rate)
    assert high == (1.0 if rate * 0.5 > 0.0198 else pytest.approx(0.5 * rate / 0.0198))
    assert 0.0 <= low <= high <= 1.0


def test_the_failing_units_weight_reads_back_the_design_effect() -> None:
    failing = failing_of(FAILING, 7.51)
    assert failing is not None
    variance = 0.02 * 0.98 * (failing.high - failing.low) ** 2
    base = FAILING.error_rate
    assert base * (1 - base) + failing.weight * variance == pytest.approx(7.51 * base * (1 - base))
    assert failing_of(_plain(FAILING), 7.51) is None


@pytest.mark.parametrize(
    ("traffic", "percent", "contents"),
    [
        (_plain(HEAVY), 5.0, 1),
        (HEAVY, 5.0, None),
        (HEAVY, 95.0, None),
        (replace(HEAVY, requests_per_s=1e6, heavy_requests=20.0), 50.0, 1),  # past MIXED_UNITS
    ],
)
def test_the_contents_of_an_arm_average_to_the_expected_one(
    traffic: Traffic, percent: float, contents: int | None
) -> None:
    arms = arms_at(percent, traffic, 600.0)
    found = arm_contents(percent, traffic, arms)
    if contents is not None:
        assert len(found) == contents
    assert math.fsum(w for w, _ in found) == pytest.approx(1.0)
    for arm in (0, 1):
        mean = math.fsum(w * c.requests[arm] for w, c in found)
        assert mean == pytest.approx(arms.requests[arm], rel=1e-3)
    assert MIXED_UNITS > 0


def test_failing_units_are_counted_among_the_treatments_effective_units() -> None:
    arms = arms_at(1.0, FAILING, 1200.0)
    failing = failing_of(FAILING, 7.51)
    found = arm_contents(1.0, FAILING, arms, failing)
    assert len(found) > 2
    shares = [c.failing for _, c in found]
    assert all(s is not None for s in shares)
    mean = math.fsum(w * (c.failing or 0.0) for w, c in found)
    assert mean == pytest.approx(0.02, rel=1e-3)
    assert found[0][0] > 0.5  # most such arms hold no failing unit that counts
    assert arm_contents(99.0, FAILING, arms, failing) == [(1.0, arms)]  # control the smaller


@pytest.mark.parametrize(
    "bad",
    [
        {"heavy_share": 1.0, "heavy_requests": 100.0},
        {"heavy_share": 0.01, "heavy_requests": 5.0},
        {"heavy_share": 0.5, "heavy_requests": 100.0},
        {"failing_share": 0.02, "failing_rate": 0.001},
        {"failing_share": 0.5, "failing_rate": 0.5},
    ],
)
def test_unlike_units_out_of_range_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="traffic out of range"):
        Traffic(**{"requests_per_s": 1.0, "requests_per_unit": 10.0, **bad})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("units", "deff", "degrees"),
    [
        # Units alike fill every bucket of both arms: twice 64 degrees, whatever d.
        (10_000.0, 1.0, 128.0),
        (10_000.0, 3.0, 128.0),
        # 20 units an arm occupy 64·(1 - e^(-20/64)) = 17.2 buckets each.
        (20.0, 1.0, 2 * 64 * -math.expm1(-20 / 64)),
    ],
)
def test_the_gates_variance_has_a_degree_per_occupied_bucket_with_units_alike(
    units: float, deff: float, degrees: float
) -> None:
    traffic = Traffic(requests_per_s=1.0, requests_per_unit=5.0)
    arms = Arms((units * 5.0, units * 5.0), (units, units))
    assert estimate_degrees(traffic, arms, deff) == pytest.approx(degrees, rel=1e-9)


def test_heavy_units_each_in_a_bucket_of_their_own_leave_the_gate_few_degrees() -> None:
    """5 heavy units an arm, each carrying 1,150 requests of spread against about 57 per bucket
    of light units: both arms' degrees fall from 128 to about 24; arms that happen to hold
    none have them all."""
    arms = arms_at(50.0, HEAVY, 600.0)
    both = estimate_degrees(HEAVY, arms, 1.0)
    assert 15.0 < both < 35.0
    none = replace(arms, heavy=(0.0, 0.0))
    assert estimate_degrees(HEAVY, none, 1.0) == pytest.approx(128.0, rel=0.01)
