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

import pytest

from controller.core.common.histogram import BUCKET_COUNT, bucket_of
from controller.core.stats.latency import (
    histogram_quantile,
    latency_quantile_test,
    quantile_interval,
    quantile_min_samples,
    quantile_standard_error,
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
