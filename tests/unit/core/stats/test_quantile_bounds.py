"""A latency quantile is tested only where its sample can bound it.

The standard error is Woodruff's: the distribution-free order-statistic
interval of the quantile (Conover's binomial method, normal approximation of
the ranks) mapped through the quantile function, SE = width / 2z. These tests
check the floor it implies and compare the SE with two references on
simulated latencies (a log-normal body with rare long stalls): the spread of
the estimate over many independent samples, and the bootstrap.
"""

from __future__ import annotations

import math
import random
import statistics
from bisect import bisect_right

import pytest

from controller.core.common.histogram import BUCKET_COUNT, EDGES_MS, bucket_of
from controller.core.rollouts.plan import parse_plan
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.guardrails import guardrail_result
from controller.core.stats.latency import (
    histogram_quantile,
    latency_quantile_test,
    quantile_interval,
    quantile_min_samples,
    quantile_standard_error,
)
from controller.core.stats.units import (
    FINE_PER_BIN,
    KIND_COUNT,
    LATENCY,
    REQUESTS,
    UNIT_BUCKETS,
    ShareSpread,
    UnitBuckets,
    within_arms_design_effect,
)


def hist_of(counts: dict[int, int]) -> tuple[int, ...]:
    return tuple(counts.get(i, 0) for i in range(BUCKET_COUNT))


def latencies(rng: random.Random, n: int, *, stall_share: float = 0.005) -> list[int]:
    """Histogram of ``n`` requests: log-normal around 20 ms, stalls around 400 ms."""
    counts = [0] * BUCKET_COUNT
    for _ in range(n):
        stalled = rng.random() < stall_share
        ms = (
            rng.lognormvariate(math.log(400), 0.6)
            if stalled
            else rng.lognormvariate(math.log(20), 0.5)
        )
        counts[bucket_of(ms)] += 1
    return counts


def newcomer() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A tiny treatment arm: 14 requests, 3 slowed by one hiccup, against 296 control."""
    treatment = hist_of({bucket_of(2.0): 11, bucket_of(5.0): 3})
    rng = random.Random(24)
    control = [0] * BUCKET_COUNT
    for _ in range(296):
        control[bucket_of(rng.lognormvariate(math.log(2.0), 0.3))] += 1
    return treatment, tuple(control)


def test_the_p95_of_14_requests_gives_no_bound() -> None:
    treatment, control = newcomer()
    result = latency_quantile_test(treatment, control, 0.95, relative_tolerance=0.10)
    assert (result.regressed, result.half_width, result.p_value) == (False, math.inf, 1.0)
    assert quantile_standard_error(treatment, 0.95) == math.inf
    assert quantile_standard_error(control, 0.95) < math.inf  # 296 requests bound it


@pytest.mark.parametrize(("q", "floor"), [(0.5, 4), (0.9, 35), (0.95, 73), (0.99, 381)])
def test_the_floor_is_where_the_interval_fits_in_the_sample(q: float, floor: int) -> None:
    assert quantile_min_samples(q) == floor
    assert floor >= 1.96**2 * q / (1 - q) > floor - 1
    enough, fewer = hist_of({40: floor // 2, 60: floor - floor // 2}), hist_of({40: floor - 1})
    assert quantile_interval(enough, q) is not None
    assert quantile_interval(fewer, q) is None
    assert quantile_standard_error(fewer, q) == math.inf


@pytest.mark.parametrize("q", [0.0, 1.0, -0.1, 1.5])
def test_the_floor_needs_a_quantile_inside_the_distribution(q: float) -> None:
    with pytest.raises(ValueError, match="0 < q < 1"):
        quantile_min_samples(q)


def test_an_empty_histogram_has_no_interval() -> None:
    assert quantile_interval(hist_of({}), 0.95) is None


def _bootstrap_se(rng: random.Random, hist: list[int], q: float, resamples: int) -> float:
    n, buckets = sum(hist), range(BUCKET_COUNT)
    estimates = []
    for _ in range(resamples):
        counts = [0] * BUCKET_COUNT
        for index in rng.choices(buckets, weights=hist, k=n):
            counts[index] += 1
        estimates.append(histogram_quantile(counts, q))
    return statistics.stdev(e for e in estimates if e is not None)


@pytest.mark.parametrize(("n", "q"), [(1_000, 0.95), (4_000, 0.99)])
def test_the_standard_error_agrees_with_simulation_and_the_bootstrap(n: int, q: float) -> None:
    rng = random.Random(n)
    samples = [latencies(rng, n) for _ in range(150)]
    estimates = [histogram_quantile(s, q) for s in samples]
    spread = statistics.stdev(e for e in estimates if e is not None)  # the SE it estimates
    woodruff = statistics.median(quantile_standard_error(s, q) for s in samples)
    bootstrap = statistics.median(_bootstrap_se(rng, s, q, 80) for s in samples[:10])
    print(f"\nn = {n}, q = {q}: SE over 150 samples {spread:.3f} ms, Woodruff's (median)"
          f" {woodruff:.3f} ms, bootstrap (median of 10) {bootstrap:.3f} ms")  # fmt: skip
    assert woodruff == pytest.approx(spread, rel=0.20)
    assert bootstrap == pytest.approx(spread, rel=0.25)


# --- each arm's design effect around its own latency ---------------------------------
# A difference between the arms is the effect, never clustering: each arm's design effect
# is taken around its own latency, so a latency regression is not read as units that vary.
#
# Each case draws both arms unit by unit (one request per unit, or many from a unit with a
# speed of its own) and tests p95, p99 and the share above an edge on units. At one request
# per unit no unit is correlated with itself, so the design effect stays near 1 however far
# treatment's latency moves; with slow and fast units it is well above 1 in both arms.

PLAN = parse_plan(
    {
        "stages": [{"percent": 50, "min_duration": "PT1H"}, {"percent": 100}],
        "guardrails": [
            {"metric": "latency_p95", "tolerance": 0.1, "relative": True},
            {"metric": "latency_p99", "tolerance": 0.1, "relative": True},
            {"metric": "latency_exceedance", "edge_ms": 250.0, "tolerance": 0.0},
        ],
    }
)


def _arm(
    rng: random.Random, units: int, *, scale: float, per_unit: int, spread: float
) -> ArmAggregate:
    """``units`` units of ``per_unit`` requests each, log-normal latencies around 80 ms
    times ``scale``; each unit's own speed varies by ``spread`` (log-sd) around it."""
    hist = [0] * BUCKET_COUNT
    slots = [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    requests = 0
    for _ in range(units):
        base = rng.randrange(UNIT_BUCKETS) * KIND_COUNT
        mu = math.log(80.0 * scale) + rng.gauss(0.0, spread)
        for _ in range(per_unit):
            index = bisect_right(EDGES_MS, rng.lognormvariate(mu, 0.6))
            hist[index] += 1
            slots[base + LATENCY + index // FINE_PER_BIN] += 1
        slots[base + REQUESTS] += per_unit
        requests += per_unit
    return ArmAggregate(
        units=units,
        requests=requests,
        latency_count=requests,
        latency_histogram=tuple(hist),
        buckets=UnitBuckets(tuple(slots)),
    )


CASES = {
    # name: (treatment's latency scale, requests per unit, each unit's own log-sd, range)
    "A/A, one request per unit": (1.0, 1, 0.0, (0.7, 1.4)),
    "+17%, one request per unit": (1.17, 1, 0.0, (0.7, 1.4)),
    "+50%, one request per unit": (1.5, 1, 0.0, (0.7, 1.4)),
    "x3, one request per unit": (3.0, 1, 0.0, (0.7, 1.5)),
    "A/A, slow and fast units": (1.0, 10, 0.8, (2.0, 20.0)),
    "+50%, slow and fast units": (1.5, 10, 0.8, (2.0, 20.0)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("metric", ["latency_p95", "latency_p99", "latency_exceedance"])
def test_the_design_effect_is_each_arms_own(name: str, metric: str) -> None:
    scale, per_unit, spread, (low, high) = CASES[name]
    rng = random.Random(f"{name}/{metric}")
    units = 20_000 // per_unit
    data = FlagAggregates(
        "f",
        frozenset({1}),
        _arm(rng, units, scale=scale, per_unit=per_unit, spread=spread),
        _arm(rng, units, scale=1.0, per_unit=per_unit, spread=spread),
    )
    guardrail = next(g for g in PLAN.guardrails if g.metric == metric)
    result = guardrail_result(guardrail, data, PLAN)
    assert result is not None
    assert result.unit_of_analysis == "unit"
    assert result.design_effect is not None
    assert low <= result.design_effect <= high, result.design_effect


def _spread(share: float, total: float, clusters: int, spread: float) -> ShareSpread:
    return ShareSpread(share=share, total=total, clusters=clusters, spread=spread)


@pytest.mark.parametrize(
    ("arms", "expected"),
    [
        # Binomial spread in both arms: 1, with the degrees of freedom of 2 x 64 buckets.
        (((0.1, 1000, 64, 90.0), (0.3, 1000, 64, 210.0)), 128 / 126),
        # The same spreads whatever the shares differ by: no difference counts.
        (((0.1, 1000, 64, 90.0), (0.9, 1000, 64, 90.0)), 128 / 126),
        # Twice the binomial spread in one arm of two equal ones: 1.5.
        (((0.5, 1000, 64, 500.0), (0.5, 1000, 64, 250.0)), 1.5 * 128 / 126),
        # An arm with no latency above the edge adds none of either.
        (((0.0, 1000, 64, 0.0), (0.5, 1000, 64, 250.0)), 128 / 126),
        # Too few buckets hold data in one arm: not yet said.
        (((0.5, 1000, 7, 250.0), (0.5, 1000, 64, 250.0)), None),
        # Shares of 0 and 1: nothing varies.
        (((0.0, 1000, 64, 0.0), (1.0, 1000, 64, 0.0)), None),
    ],
)
def test_the_within_arms_design_effect(
    arms: tuple[tuple[float, float, int, float], ...], expected: float | None
) -> None:
    found = within_arms_design_effect([_spread(*arm) for arm in arms])
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)
