"""The statistics behind the gates: tables of cases, properties and simulations."""

from __future__ import annotations

import json
import math
import random
import statistics
from bisect import bisect_left
from functools import cache

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from controller.core.common.histogram import BUCKET_COUNT, EDGES_MS, bucket_bounds
from controller.core.stats.latency import (
    exceedance_bucket,
    exceedance_test,
    histogram_quantile,
    latency_quantile_test,
    quantile_standard_error,
)
from controller.core.stats.sequential import (
    Direction,
    SequentialResult,
    difference_test,
    mean_test,
    proportion_test,
    sequential_half_width,
    sequential_rho,
    sequential_test,
)
from controller.core.stats.srm import srm_test

LOWER: Direction = "lower_is_better"
HIGHER: Direction = "higher_is_better"


def design_half_width(*, variance: float, n: int, alpha: float, n_tune: int) -> float:
    """The bound of docs/architecture.md, *Statistics*, typed out once more."""
    rho = math.sqrt((-2 * math.log(2 * alpha) + math.log(1 - 2 * math.log(2 * alpha))) / n_tune)
    term = n * rho**2 + 1
    return math.sqrt(
        n * variance * 2 * term / (n * rho) ** 2 * math.log(1 + math.sqrt(term) / (2 * alpha))
    )


def hist_of(counts: dict[int, int]) -> tuple[int, ...]:
    return tuple(counts.get(i, 0) for i in range(BUCKET_COUNT))


def bisect_p_value(result: SequentialResult, iterations: int = 60) -> float:
    """The smallest level at which the boundary leaves the tolerance, by bisection on log a'."""
    rho = sequential_rho(result.alpha, result.n_tune)

    def excludes(level: float) -> bool:
        width = sequential_half_width(variance=result.variance, n=result.n, alpha=level, rho=rho)
        sign = 1.0 if result.direction == LOWER else -1.0
        return sign * result.delta - result.tolerance > width

    low, high = 1e-12, 1.0
    if excludes(low):
        return low
    if not excludes(high):
        return 1.0
    for _ in range(iterations):
        middle = math.sqrt(low * high)
        low, high = (low, middle) if excludes(middle) else (middle, high)
    return high


# --- the design's examples ----------------------------------------------------------------


def test_design_error_rate_example() -> None:
    result = proportion_test(650, 100_000, 500, 100_000, direction=LOWER)
    assert f"{result.half_width:.4e}" == "1.0797e-03"
    assert f"{result.lower:.2e}" == "4.20e-04"
    # With equal arms the pooled variance, 0.575% · 99.425% · 2 / 100,000, is a hair
    # above the arms' own (0.65% · 99.35% + 0.5% · 99.5%) / 100,000: it is the one used.
    own = (0.0065 * 0.9935 + 0.005 * 0.995) / 100_000
    pooled = 0.00575 * 0.99425 * 2 / 100_000
    assert own < pooled < own * 1.0002
    assert abs(result.variance - pooled) < 1e-18
    assert abs(result.half_width - 1.07970715e-3) < 1e-9
    assert abs(result.lower - 4.20292846e-4) < 1e-9
    assert abs(result.delta - 1.5e-3) < 1e-15
    assert result.n == 200_000
    assert result.regressed
    assert result.p_value < 0.05


def test_design_formula_reads_ln_2a_as_ln_of_2a() -> None:
    # Tuning rho with ln(a), as the two-sided test does, misses the example's h = 1.0797e-3
    # (it gives 1.0911e-3); ln(2)·a would make rho² negative.
    variance = (0.0065 * 0.9935 + 0.005 * 0.995) / 100_000
    literal = design_half_width(variance=variance, n=200_000, alpha=0.05, n_tune=5000)
    assert f"{literal:.4e}" == "1.0797e-03"
    rho_of_alpha = math.sqrt((-2 * math.log(0.05) + math.log(1 - 2 * math.log(0.05))) / 5000)
    other = sequential_half_width(variance=variance, n=200_000, alpha=0.05, rho=rho_of_alpha)
    assert f"{other:.4e}" != "1.0797e-03"


def test_design_srm_example() -> None:
    result = srm_test(9_600, 90_400, 0.10)
    assert f"{result.chi2:.2f}" == "17.78"
    assert abs(result.chi2 - 160 / 9) < 1e-9
    assert f"{result.p_value:.1e}" == "2.5e-05"
    assert abs(result.p_value - 2.48266063e-5) < 1e-12
    assert (result.expected_treatment, result.expected_control) == pytest.approx((10_000, 90_000))
    # One look's p-value is 2.5e-5, but the gate looks continuously: the
    # anytime-valid evidence at this point is a Bayes factor of about 695, short
    # of the 1,000 that p < 0.001 needs; the same 0.4-point deficit is flagged
    # once twice as many units have arrived.
    assert 600 < result.bayes_factor < 800
    assert not result.flagged
    assert srm_test(19_200, 180_800, 0.10).flagged


# --- the sequential test --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean_t", "var_t", "n_t", "mean_c", "var_c", "n_c"),
    [
        (0.0065, 0.0065 * 0.9935, 100_000, 0.005, 0.005 * 0.995, 100_000),
        (10.0, 4.0, 50, 9.0, 5.0, 70),
        (0.5, 0.25, 1, 0.5, 0.25, 1),
        (0.02, 0.0196, 10**12, 0.02, 0.0196, 10**12),
        (3.0, 1.0, 5_000, 3.0, 1.0, 5_000_000),
    ],
)
def test_half_width_matches_the_design_formula(
    mean_t: float, var_t: float, n_t: int, mean_c: float, var_c: float, n_c: int
) -> None:
    result = sequential_test(
        mean_t=mean_t, var_t=var_t, n_t=n_t, mean_c=mean_c, var_c=var_c, n_c=n_c, direction=LOWER
    )
    expected = design_half_width(
        variance=var_t / n_t + var_c / n_c, n=n_t + n_c, alpha=0.05, n_tune=5000
    )
    assert result.half_width == pytest.approx(expected, rel=1e-12)
    assert (result.lower, result.upper) == pytest.approx(
        (result.delta - expected, result.delta + expected)
    )


@pytest.mark.parametrize(
    ("case", "args", "regressed", "half_width"),
    [
        ("no treatment", (0, 0, 500, 100_000), False, math.inf),
        ("no control", (500, 100_000, 0, 0), False, math.inf),
        ("no data", (0, 0, 0, 0), False, math.inf),
        ("identical", (500, 100_000, 500, 100_000), False, None),
        ("identical, huge", (2 * 10**10, 10**12, 2 * 10**10, 10**12), False, None),
        ("tiny step, huge n", (20_010_000_000, 10**12, 2 * 10**10, 10**12), True, None),
        ("treatment better", (300, 100_000, 500, 100_000), False, None),
        ("all errors vs none", (1_000, 1_000, 0, 1_000), True, None),
        ("one request each", (1, 1, 0, 1), False, None),
        ("no errors anywhere", (0, 1_000, 0, 1_000), False, None),
    ],
)
def test_proportion_cases(
    case: str, args: tuple[int, int, int, int], regressed: bool, half_width: float | None
) -> None:
    result = proportion_test(*args, direction=LOWER)
    assert result.regressed is regressed, case
    if half_width is not None:
        assert result.half_width == half_width
    assert (result.p_value < result.alpha) is regressed


@pytest.mark.parametrize(
    ("delta", "tolerance", "direction", "regressed"),
    [
        (1.5e-3, 0.0, LOWER, True),
        (1.5e-3, 4.0e-4, LOWER, True),
        (1.5e-3, 4.3e-4, LOWER, False),
        (-1.5e-3, 0.0, LOWER, False),
        (-1.5e-3, 0.0, HIGHER, True),
        (-1.5e-3, 4.3e-4, HIGHER, False),
        (1.5e-3, 0.0, HIGHER, False),
    ],
)
def test_tolerance_and_direction(
    delta: float, tolerance: float, direction: Direction, regressed: bool
) -> None:
    variance = (0.0065 * 0.9935 + 0.005 * 0.995) / 100_000
    result = difference_test(
        delta=delta, variance=variance, n=200_000, direction=direction, tolerance=tolerance
    )
    assert result.regressed is regressed


def test_zero_variance_gives_zero_width_and_no_verdict() -> None:
    result = difference_test(delta=0.5, variance=0.0, n=100, direction=LOWER)
    assert (result.half_width, result.regressed, result.p_value) == (0.0, False, 1.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha": 0.0},
        {"alpha": 0.5},
        {"tolerance": -0.1},
        {"n_tune": 0},
        {"direction": "sideways"},
        {"variance": -1.0},
        {"variance": math.nan},
        {"n": -1},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"delta": 0.1, "variance": 0.01, "n": 100, "direction": LOWER}
    with pytest.raises(ValueError, match=r"must be|need"):
        difference_test(**{**args, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(("alpha", "rho"), [(0.0, 0.03), (0.05, 0.0), (-0.1, 0.03)])
def test_half_width_refuses_degenerate_parameters(alpha: float, rho: float) -> None:
    with pytest.raises(ValueError, match="need"):
        sequential_half_width(variance=1.0, n=10, alpha=alpha, rho=rho)


@pytest.mark.parametrize(("alpha", "n_tune"), [(0.0, 5000), (0.5, 5000), (0.7, 5000), (0.05, 0)])
def test_rho_and_p_value_refuse_degenerate_parameters(alpha: float, n_tune: int) -> None:
    with pytest.raises(ValueError, match="need"):
        sequential_rho(alpha, n_tune)
    with pytest.raises(ValueError, match="need"):
        difference_test(delta=1.0, variance=1.0, n=10, direction=LOWER, alpha=alpha, n_tune=n_tune)


@pytest.mark.parametrize("args", [(5, 4, 1, 4), (-1, 4, 1, 4), (1, 4, 1, -4)])
def test_impossible_counts_are_refused(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="successes"):
        proportion_test(*args, direction=LOWER)


def test_evidence_is_json_ready() -> None:
    for result in (
        proportion_test(650, 100_000, 500, 100_000, direction=LOWER),
        proportion_test(0, 0, 0, 0, direction=LOWER),
    ):
        evidence = result.evidence()
        assert json.loads(json.dumps(evidence, allow_nan=False)) == evidence
        assert set(evidence) >= {"delta", "lower", "upper", "half_width", "p_value", "regressed"}
    assert proportion_test(0, 0, 0, 0, direction=LOWER).evidence()["lower"] == "-inf"
    srm = srm_test(9_600, 90_400, 0.1).evidence()
    assert json.loads(json.dumps(srm, allow_nan=False)) == srm


# --- the always-valid p-value ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "direction"),
    [
        ((650, 100_000, 500, 100_000), LOWER),
        ((560, 100_000, 500, 100_000), LOWER),
        ((500, 100_000, 650, 100_000), HIGHER),
        ((30, 1_000, 20, 1_000), LOWER),
        ((900, 100_000, 500, 100_000), LOWER),
    ],
)
def test_closed_form_p_value_agrees_with_bisection(
    args: tuple[int, int, int, int], direction: Direction
) -> None:
    result = proportion_test(*args, direction=direction)
    assert result.p_value == pytest.approx(bisect_p_value(result), rel=1e-9, abs=1e-12)


def test_design_example_p_value() -> None:
    result = proportion_test(650, 100_000, 500, 100_000, direction=LOWER)
    assert abs(result.p_value - 4.41827336e-4) < 1e-12


@pytest.mark.parametrize(
    ("delta", "variance", "n", "expected"),
    [
        (-0.01, 1e-6, 1_000, 1.0),
        (0.0, 1e-6, 1_000, 1.0),
        (0.01, 0.0, 1_000, 1.0),
        (0.01, math.inf, 1_000, 1.0),
        (0.01, 1e-6, 0, 1.0),
        (1.0, 1e-12, 10**6, 0.0),
    ],
)
def test_p_value_edges(delta: float, variance: float, n: int, expected: float) -> None:
    p_value = difference_test(delta=delta, variance=variance, n=n, direction=LOWER).p_value
    assert p_value == expected


@settings(deadline=None)
@given(
    errors_t=st.integers(0, 5_000),
    errors_c=st.integers(0, 5_000),
    n_t=st.integers(5_000, 200_000),
    n_c=st.integers(5_000, 200_000),
    alpha=st.floats(0.001, 0.2),
)
def test_p_value_below_alpha_iff_regressed(
    errors_t: int, errors_c: int, n_t: int, n_c: int, alpha: float
) -> None:
    result = proportion_test(errors_t, n_t, errors_c, n_c, direction=LOWER, alpha=alpha)
    assume(abs(result.p_value - alpha) > 1e-9 * alpha)
    assert (result.p_value < alpha) is result.regressed


# --- monotonicity -----------------------------------------------------------------------------


@settings(deadline=None)
@given(
    errors_t=st.integers(0, 2_000),
    extra=st.integers(1, 2_000),
    errors_c=st.integers(0, 2_000),
    n_t=st.integers(2_000, 100_000),
    n_c=st.integers(2_000, 100_000),
)
def test_more_treatment_errors_never_lower_a_positive_lower_bound(
    errors_t: int, extra: int, errors_c: int, n_t: int, n_c: int
) -> None:
    # Where the bound is negative a plug-in variance can widen faster than Δ grows at
    # small counts; where it matters (above the tolerance) the bound only rises.
    before = proportion_test(errors_t, n_t, errors_c, n_c, direction=LOWER)
    after = proportion_test(min(n_t, errors_t + extra), n_t, errors_c, n_c, direction=LOWER)
    if before.lower > 0:
        assert after.lower >= before.lower
    if before.regressed:
        assert after.regressed


@settings(deadline=None)
@given(
    errors_t=st.integers(0, 2_000),
    errors_c=st.integers(0, 2_000),
    extra=st.integers(1, 2_000),
    n=st.integers(2_000, 100_000),
)
def test_more_control_errors_never_create_a_regression(
    errors_t: int, errors_c: int, extra: int, n: int
) -> None:
    before = proportion_test(errors_t, n, errors_c, n, direction=LOWER)
    after = proportion_test(errors_t, n, min(n, errors_c + extra), n, direction=LOWER)
    if not before.regressed:
        assert not after.regressed


@settings(deadline=None)
@given(
    variance=st.floats(1e-12, 1e3),
    n=st.integers(1, 10**9),
    alpha=st.floats(1e-6, 0.049),
    step=st.floats(1e-6, 0.01),
)
def test_a_larger_alpha_narrows_the_interval(
    variance: float, n: int, alpha: float, step: float
) -> None:
    # Up to a = 0.05: beyond about 0.057, at small N, the retuned rho widens h again.
    def width(level: float) -> float:
        return difference_test(
            delta=0.0, variance=variance, n=n, direction=LOWER, alpha=level
        ).half_width

    assert width(alpha + step) <= width(alpha) * (1 + 1e-12)


@settings(deadline=None)
@given(
    variance=st.floats(1e-12, 1e3),
    n=st.integers(1, 10**9),
    alpha=st.floats(1e-9, 0.98),
    step=st.floats(1e-6, 0.01),
)
def test_with_rho_fixed_a_larger_level_always_narrows(
    variance: float, n: int, alpha: float, step: float
) -> None:
    rho = sequential_rho(0.05, 5000)
    wide = sequential_half_width(variance=variance, n=n, alpha=alpha, rho=rho)
    narrow = sequential_half_width(variance=variance, n=n, alpha=alpha + step, rho=rho)
    assert narrow < wide


@settings(deadline=None)
@given(
    successes_a=st.integers(0, 1_000),
    successes_b=st.integers(0, 1_000),
    n_a=st.integers(1_000, 50_000),
    n_b=st.integers(1_000, 50_000),
)
def test_directions_mirror_each_other(
    successes_a: int, successes_b: int, n_a: int, n_b: int
) -> None:
    lower = proportion_test(successes_a, n_a, successes_b, n_b, direction=LOWER)
    higher = proportion_test(successes_b, n_b, successes_a, n_a, direction=HIGHER)
    assert lower.regressed is higher.regressed
    assert lower.half_width == pytest.approx(higher.half_width)


# --- means ------------------------------------------------------------------------------------


def sums(values: list[float]) -> tuple[float, float, int]:
    return sum(values), sum(v * v for v in values), len(values)


@pytest.mark.parametrize(
    ("treatment", "control", "regressed"),
    [
        ([10.0, 12.0, 11.0, 9.0] * 500, [10.0, 12.0, 11.0, 9.0] * 500, False),
        ([8.0, 10.0, 9.0, 7.0] * 500, [10.0, 12.0, 11.0, 9.0] * 500, True),
        ([12.0, 14.0, 13.0, 11.0] * 500, [10.0, 12.0, 11.0, 9.0] * 500, False),
        ([5.0], [10.0, 12.0, 11.0, 9.0] * 500, False),
        ([], [10.0, 12.0], False),
    ],
)
def test_mean_cases(treatment: list[float], control: list[float], regressed: bool) -> None:
    result = mean_test(*sums(treatment), *sums(control), direction=HIGHER)
    assert result.regressed is regressed


def test_mean_test_uses_the_sample_variance() -> None:
    treatment, control = [1.0, 2.0, 4.0, 8.0, 9.0], [3.0, 3.5, 5.0]
    result = mean_test(*sums(treatment), *sums(control), direction=HIGHER)
    var_t, var_c = statistics.variance(treatment), statistics.variance(control)
    pooled = (4 * var_t + 2 * var_c) / 6 * (1 / 5 + 1 / 3)
    assert result.variance == pytest.approx(max(var_t / 5 + var_c / 3, pooled))
    assert result.delta == pytest.approx(statistics.mean(treatment) - statistics.mean(control))
    # A small arm that varies more than the large one: its own variance is the larger.
    wide, narrow = [1.0, 10.0, 20.0], [5.0, 5.5, 6.0, 5.0, 5.5]
    result = mean_test(*sums(wide), *sums(narrow), direction=HIGHER)
    own = statistics.variance(wide) / 3 + statistics.variance(narrow) / 5
    assert result.variance == pytest.approx(own)


def test_mean_test_never_goes_below_the_pooled_variance() -> None:
    # A small treatment arm without the large values control has: its own variance
    # is tiny exactly when its mean looks low; the null's (pooled) variance is used.
    treatment, control = [10.0, 11.0, 9.0, 10.0] * 50, [5.0, 10.0, 15.0, 60.0] * 500
    result = mean_test(*sums(treatment), *sums(control), direction=HIGHER)
    n_t, n_c = len(treatment), len(control)
    own = statistics.variance(treatment) / n_t + statistics.variance(control) / n_c
    pooled = (
        (n_t - 1) * statistics.variance(treatment) + (n_c - 1) * statistics.variance(control)
    ) / (n_t + n_c - 2)
    assert result.variance == pytest.approx(pooled * (1 / n_t + 1 / n_c))
    assert result.variance > 5 * own


def test_a_rate_never_goes_below_the_pooled_variance() -> None:
    # 2 conversions in 150 against 5% of 15,000: the arm's own p(1-p) would be a third
    # of what 5% gives; the pooled rate's variance is used, and it is no regression.
    result = proportion_test(2, 150, 750, 15_000, direction=HIGHER, alpha=0.0125)
    pooled = 752 / 15_150
    assert result.variance == pytest.approx(pooled * (1 - pooled) * (1 / 150 + 1 / 15_000))
    assert not result.regressed
    own = (2 / 150) * (148 / 150) / 150 + 0.05 * 0.95 / 15_000
    alone = difference_test(
        delta=result.delta, variance=own, n=15_150, direction=HIGHER, alpha=0.0125
    )
    assert alone.regressed, "on its own variance this arm would have been rolled back"


def test_a_single_value_gives_no_verdict() -> None:
    result = mean_test(*sums([1.0]), *sums([5.0, 6.0, 7.0]), direction=HIGHER)
    assert (result.half_width, result.regressed) == (math.inf, False)


# --- latency quantiles ------------------------------------------------------------------------

LOW_60, HIGH_60 = bucket_bounds(60)


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        ({60: 100}, 0.0, LOW_60),
        ({60: 100}, 1.0, HIGH_60),
        ({60: 100}, 0.5, math.sqrt(LOW_60 * HIGH_60)),
        ({60: 100}, 0.25, LOW_60 * (HIGH_60 / LOW_60) ** 0.25),
        ({60: 50, 61: 50}, 0.5, HIGH_60),
        ({60: 50, 61: 50}, 0.75, math.sqrt(bucket_bounds(61)[0] * bucket_bounds(61)[1])),
        ({0: 10}, 0.5, 0.05),
        ({0: 10}, 0.3, 0.03),
        ({117: 10}, 0.5, EDGES_MS[-1]),
        ({117: 10}, 1.0, EDGES_MS[-1]),
        ({10: 1, 80: 99}, 0.0, bucket_bounds(10)[0]),
        ({10: 1, 80: 99}, 0.01, bucket_bounds(10)[1]),
    ],
)
def test_histogram_quantile_table(counts: dict[int, int], q: float, expected: float) -> None:
    assert histogram_quantile(hist_of(counts), q) == pytest.approx(expected, rel=1e-12)


@settings(deadline=None)
@given(index=st.integers(0, BUCKET_COUNT - 1), count=st.integers(1, 10**9), q=st.floats(0.0, 1.0))
def test_mass_in_one_bucket_stays_in_that_bucket(index: int, count: int, q: float) -> None:
    low, high = bucket_bounds(index)
    value = histogram_quantile(hist_of({index: count}), q)
    assert value is not None
    assert low * (1 - 1e-12) <= value <= min(high, 1e300) * (1 + 1e-12)


@settings(deadline=None)
@given(
    counts=st.lists(st.integers(0, 1_000), min_size=BUCKET_COUNT, max_size=BUCKET_COUNT),
    q_low=st.floats(0.0, 1.0),
    q_high=st.floats(0.0, 1.0),
)
def test_quantiles_rise_with_q(counts: list[int], q_low: float, q_high: float) -> None:
    assume(sum(counts) > 0)
    low, high = sorted((q_low, q_high))
    assert histogram_quantile(counts, low) <= histogram_quantile(counts, high)  # type: ignore[operator]


def test_empty_histogram_has_no_quantile() -> None:
    assert histogram_quantile(hist_of({}), 0.99) is None
    assert quantile_standard_error(hist_of({}), 0.99) == math.inf


@pytest.mark.parametrize(
    ("hist", "q"),
    [(hist_of({1: 1}), 1.5), (hist_of({1: 1}), -0.1), ((1, 2, 3), 0.5), (hist_of({3: -1}), 0.5)],
)
def test_bad_histograms_are_refused(hist: tuple[int, ...], q: float) -> None:
    with pytest.raises(ValueError, match=r"bucket counts|q must"):
        histogram_quantile(hist, q)


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_standard_error_shrinks_like_root_n(q: float) -> None:
    # 1,000 requests (p99 needs 381 to be bounded at all), then 10,000 times more
    shape = {50 + i: c * 10 for i, c in enumerate((5, 10, 20, 30, 20, 10, 4, 1))}
    small = quantile_standard_error(hist_of(shape), q)
    large = quantile_standard_error(hist_of({i: c * 10_000 for i, c in shape.items()}), q)
    assert 0 < large < small
    assert small / large == pytest.approx(100, rel=0.5)


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_standard_error_at_the_ends_is_zero(q: float) -> None:
    assert quantile_standard_error(hist_of({60: 100}), q) == 0.0


def test_standard_error_inside_one_bucket() -> None:
    # n = 10,000 at q = 0.5: ranks 5,000 ± 98, fractions 0.5 ± 0.0098 of bucket 60.
    se = quantile_standard_error(hist_of({60: 10_000}), 0.5)
    ratio = HIGH_60 / LOW_60
    expected = LOW_60 * (ratio**0.5098 - ratio**0.4902) / (2 * 1.96)
    assert se == pytest.approx(expected, rel=1e-12)


SERVICE = {50: 2_000, 55: 5_000, 60: 2_000, 65: 800, 70: 200}
FEW = {50: 20, 55: 50, 60: 20, 65: 8, 70: 2}


def shifted(shape: dict[int, int], by: int, scale: int = 1) -> tuple[int, ...]:
    return hist_of({i + by: c * scale for i, c in shape.items()})


@pytest.mark.parametrize(
    ("case", "hist_t", "q", "tolerance", "regressed"),
    [
        ("same", shifted(SERVICE, 0, 10), 0.99, 0.10, False),
        ("4 buckets slower, p99", shifted(SERVICE, 4, 10), 0.99, 0.10, True),
        ("4 buckets slower, p50", shifted(SERVICE, 4, 10), 0.5, 0.10, True),
        ("1 bucket (12%) slower", shifted(SERVICE, 1, 10), 0.99, 0.10, True),
        ("1 bucket slower, 15% tolerated", shifted(SERVICE, 1, 10), 0.99, 0.15, False),
        ("faster", shifted(SERVICE, -4, 10), 0.99, 0.10, False),
        ("p99 of 100 requests is too uncertain", shifted(FEW, 4), 0.99, 0.10, False),
        ("p50 of 100 requests, 4 buckets slower", shifted(FEW, 4), 0.5, 0.10, True),
        ("p50 of 100 requests, 1 bucket slower", shifted(FEW, 1), 0.5, 0.0, True),
        ("no treatment", hist_of({}), 0.99, 0.10, False),
    ],
)
def test_latency_quantile_cases(
    case: str, hist_t: tuple[int, ...], q: float, tolerance: float, regressed: bool
) -> None:
    result = latency_quantile_test(hist_t, shifted(SERVICE, 0, 10), q, relative_tolerance=tolerance)
    assert result.regressed is regressed, case


def test_latency_tolerance_is_relative_to_control() -> None:
    hist_c = shifted(SERVICE, 0, 10)
    result = latency_quantile_test(shifted(SERVICE, 2, 10), hist_c, 0.99, relative_tolerance=0.2)
    q_c = histogram_quantile(hist_c, 0.99)
    assert q_c is not None
    assert result.tolerance == pytest.approx(0.2 * q_c)
    assert result.n == 2 * sum(hist_c)
    se_c = quantile_standard_error(hist_c, 0.99)
    se_t = quantile_standard_error(shifted(SERVICE, 2, 10), 0.99)
    assert result.variance == pytest.approx(se_c**2 + se_t**2)


def test_empty_latency_arm_has_infinite_width() -> None:
    result = latency_quantile_test(hist_of({}), shifted(SERVICE, 0), 0.99)
    assert (result.half_width, result.regressed) == (math.inf, False)


@pytest.mark.parametrize(
    ("edge_ms", "bucket"),
    [
        (0.0, 0),
        (0.05, 1),
        (0.1, 1),
        (100.0, 61),
        (100.5, 62),
        (EDGES_MS[60] * (1 - 1e-12), 61),
        (EDGES_MS[-1], BUCKET_COUNT - 1),
        (1e9, BUCKET_COUNT),
    ],
)
def test_exceedance_rounds_the_edge_up_to_a_bucket_edge(edge_ms: float, bucket: int) -> None:
    assert exceedance_bucket(edge_ms) == bucket
    if bucket < BUCKET_COUNT:
        assert bucket_bounds(bucket)[0] >= edge_ms * (1 - 1e-9)


@pytest.mark.parametrize(
    ("hist_t", "regressed", "share_t"),
    [
        (shifted(SERVICE, 0, 10), False, 0.02),
        (shifted(SERVICE, 5, 10), True, 0.1),
        (shifted(SERVICE, -5, 10), False, 0.0),
    ],
)
def test_exceedance_cases(hist_t: tuple[int, ...], regressed: bool, share_t: float) -> None:
    # Buckets 70 and up hold 2% of the control's requests.
    result = exceedance_test(hist_t, shifted(SERVICE, 0, 10), EDGES_MS[69])
    assert result.regressed is regressed
    assert result.delta + 0.02 == pytest.approx(share_t)


# --- SRM --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units_t", "units_c", "share", "flagged"),
    [
        (9_600, 90_400, 0.10, False),
        (19_200, 180_800, 0.10, True),
        (9_000, 91_000, 0.10, True),
        (10_050, 89_950, 0.10, False),
        (150, 10_000, 0.01, True),
        (5_000, 5_000, 0.5, False),
        (0, 40, 0.5, False),
        (7, 100, 0.5, True),  # 53 expected: an arm of 7 is no small sample, it is short
        (8, 100, 0.5, True),
        (7, 13, 0.5, False),  # 10 expected each: the factor is not decisive
        (0, 0, 0.5, False),
        (500, 0, 0.0, False),
        (500, 20, 1.0, False),
        (10**9, 10**9 + 10**6, 0.5, True),
    ],
)
def test_srm_table(units_t: int, units_c: int, share: float, flagged: bool) -> None:
    result = srm_test(units_t, units_c, share)
    assert result.flagged is flagged
    assert 0.0 <= result.p_value <= 1.0


@pytest.mark.parametrize(
    ("units_t", "units_c", "share", "missing"),
    [
        # A held-out cohort of 2% that never arrives: about 150 expected, none seen
        (7_400, 0, 0.98, "control"),
        (0, 7_400, 0.02, "treatment"),
        (200, 0, 0.5, "control"),
        (1_100, 0, 0.99, "control"),  # 11 expected: already too unlikely to be chance
        # Too few expected for none to say anything: 0 is plausible
        (40, 0, 0.5, None),  # 20 expected: not yet decisive for a check made at every unit
        (250, 0, 0.98, None),  # 5 expected: none seen 1 time in 160
        (100, 0, 0.95, None),
        (0, 7, 0.5, None),
        (0, 0, 0.5, None),
        (0, 0, 0.98, None),
        # At a one-sided split an arm of none is the design
        (7_400, 0, 1.0, None),
    ],
)
def test_srm_flags_a_missing_arm_once_enough_were_expected(
    units_t: int, units_c: int, share: float, missing: str | None
) -> None:
    result = srm_test(units_t, units_c, share)
    assert (result.flagged, result.missing) == (missing is not None, missing)
    if missing is not None:
        expected = result.expected_control if missing == "control" else result.expected_treatment
        assert expected >= 8
        assert result.sequential_p_value < result.p_threshold


@pytest.mark.parametrize(
    ("units_t", "units_c", "share", "least", "flagged"),
    [
        # An arm short of the minimum is judged once the minimum was expected of it
        (7_400, 1, 0.98, 8, True),  # 1 held-out unit against 148 expected
        (7_400, 7, 0.98, 8, True),
        (7_400, 140, 0.98, 8, False),
        (8_288, 0, 0.999, 8, True),  # 8.3 expected, and the Bayes factor is decisive
        (8_288, 0, 0.999, 10, False),  # ...but 10 are asked for
        (390, 0, 0.98, 8, False),  # 7.8 expected
        (75_000, 0, 0.9999, 8, False),  # 7.5 expected: decisive, yet below the minimum
    ],
)
def test_an_arm_short_of_the_minimum_is_judged_once_the_minimum_was_expected(
    units_t: int, units_c: int, share: float, least: int, flagged: bool
) -> None:
    result = srm_test(units_t, units_c, share, min_units_per_arm=least)
    assert result.flagged is flagged
    assert result.missing == ("control" if flagged and units_c == 0 else None)


def test_srm_at_a_one_sided_split_has_nothing_to_test() -> None:
    result = srm_test(500, 3, 1.0)
    assert (result.chi2, result.p_value, result.flagged) == (0.0, 1.0, False)


@pytest.mark.parametrize("args", [(1, 1, -0.1), (1, 1, 1.1), (-1, 1, 0.5)])
def test_srm_refuses_nonsense(args: tuple[int, int, float]) -> None:
    with pytest.raises(ValueError, match="share"):
        srm_test(*args)


def test_srm_p_value_is_the_chi_square_tail() -> None:
    # For one degree of freedom P(χ² > 3.841) = 0.05 and P(χ² > 10.828) = 0.001.
    for critical, level in ((3.841458820694124, 0.05), (10.827566170662733, 0.001)):
        assert math.erfc(math.sqrt(critical / 2)) == pytest.approx(level, rel=1e-9)


# --- simulation: continuous peeking -----------------------------------------------------------


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Exact draw by inversion of the cumulative distribution: the least k whose cumulative
    chance reaches a uniform draw (n at most), found by bisection in the distribution's
    table, worked out once per (n, p)."""
    return bisect_left(_cumulative(n, p), rng.random(), hi=n)


@cache
def _cumulative(n: int, p: float) -> tuple[float, ...]:
    """P(X <= k) for k = 0..n, each from the one before by the ratio of successive masses
    (fine for n·p up to a few hundred)."""
    mass = (1.0 - p) ** n
    cumulative, odds = mass, p / (1.0 - p)
    table = [cumulative]
    for k in range(n):
        mass *= odds * (n - k) / (k + 1)
        cumulative += mass
        table.append(cumulative)
    return tuple(table)


def regression_rate(*, rate_t: float, rate_c: float, experiments: int, seed: int) -> float:
    """Share of experiments that ever regress when tested at each of 50 peeks of 1,000 per arm."""
    rng, hits = random.Random(seed), 0
    for _ in range(experiments):
        errors_t = errors_c = n = 0
        for _ in range(50):
            n += 1_000
            errors_t += binomial(rng, 1_000, rate_t)
            errors_c += binomial(rng, 1_000, rate_c)
            if proportion_test(errors_t, n, errors_c, n, direction=LOWER).regressed:
                hits += 1
                break
    return hits / experiments


def test_binomial_sampler_has_the_right_moments() -> None:
    rng = random.Random(7)
    draws = [binomial(rng, 1_000, 0.02) for _ in range(20_000)]
    assert statistics.mean(draws) == pytest.approx(20, rel=0.02)
    assert statistics.variance(draws) == pytest.approx(19.6, rel=0.05)


def test_aa_false_rollbacks_stay_below_alpha_under_continuous_peeking() -> None:
    rate = regression_rate(rate_t=0.02, rate_c=0.02, experiments=400, seed=20_240_501)
    print(f"\nA/A, 400 experiments, 50 peeks: false rollback rate {rate:.4f} (alpha 0.05)")
    assert rate <= 0.05


def test_doubled_error_rate_is_caught_by_the_last_peek() -> None:
    rate = regression_rate(rate_t=0.04, rate_c=0.02, experiments=400, seed=20_240_502)
    print(f"\n2% vs 4%, 400 experiments, 50 peeks: detected in {rate:.4f}")
    assert rate >= 0.95


def _srm_false_flags(share: float, *, anytime: bool, runs: int = 300, seed: int = 11) -> float:
    """Healthy stages (the split is right) checked every 10 units up to 3,000: flagged share."""
    rng = random.Random(seed)
    flagged = 0
    for _ in range(runs):
        treatment = 0
        for n in range(1, 3_001):
            treatment += rng.random() < share
            if n % 10:
                continue
            result = srm_test(treatment, n - treatment, share)
            one_look = result.p_value < result.p_threshold and min(treatment, n - treatment) >= 8
            if result.flagged if anytime else one_look:
                flagged += 1
                break
    return flagged / runs


@pytest.mark.parametrize("share", [0.01, 0.05, 0.5])
def test_srm_under_continuous_checks_rarely_flags_a_healthy_stage(share: float) -> None:
    anytime = _srm_false_flags(share, anytime=True)
    fixed = _srm_false_flags(share, anytime=False)
    print(f"\nSRM on a healthy {share:.0%} stage, 300 checks each: {anytime:.4f} flagged, "
          f"chi-square at every check {fixed:.4f}")  # fmt: skip
    assert anytime <= 0.005  # the bound is 0.001; 0.005 leaves room for 300 runs' noise
    assert anytime <= fixed


def test_srm_catches_a_real_mismatch_while_watching() -> None:
    # A stage that loses a fifth of its treatment units (5% expected, 4% seen)
    rng = random.Random(3)
    treatment = 0
    for n in range(1, 50_001):
        treatment += rng.random() < 0.04
        if n % 100 == 0 and srm_test(treatment, n - treatment, 0.05).flagged:
            break
    assert n < 20_000, n
