"""Per-arm numbers from a metric source, as the aggregates the same tests read."""

from __future__ import annotations

import math

import pytest

from controller.core.stats.latency import exceedance_bucket, histogram_quantile
from controller.core.stats.sourced import counted_arm, histogram_arm, limit_result, spread

INF = math.inf
BUCKETS = (
    (5.0, 100.0),
    (10.0, 300.0),
    (25.0, 900.0),
    (50.0, 980.0),
    (100.0, 1000.0),
    (INF, 1000.0),
)


def linear_quantile(buckets: tuple[tuple[float, float], ...], q: float) -> float:
    """Prometheus' histogram_quantile: linear inside the bucket holding the rank."""
    rank, low, below = q * buckets[-1][1], 0.0, 0.0
    for edge, cumulative in buckets:
        if cumulative >= rank:
            return low + (edge - low) * (rank - below) / (cumulative - below)
        low, below = edge, cumulative
    raise AssertionError("rank beyond the histogram")


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
def test_a_spread_histogram_reads_the_quantile_a_dashboard_shows(q: float) -> None:
    arm = histogram_arm(BUCKETS)
    assert arm.latency_count == 1000 == sum(arm.latency_histogram)
    ours = histogram_quantile(arm.latency_histogram, q)
    assert ours is not None
    assert ours == pytest.approx(linear_quantile(BUCKETS, q), rel=0.04)


def test_counts_at_a_bucket_edge_stay_on_their_side() -> None:
    """An exceedance edge on a bucket edge counts what the source counted above it."""
    hist = spread(((100.0, 900.0), (1000.0, 1000.0), (INF, 1000.0)))
    above = sum(hist[exceedance_bucket(100.0 * 1.12202) :])  # the fixed edge just above 100 ms
    assert 95 <= above <= 100


def test_the_inf_bucket_is_put_at_the_highest_finite_edge() -> None:
    hist = spread(((10.0, 50.0), (INF, 100.0)))
    assert sum(hist) == 100
    assert histogram_quantile(hist, 0.99) == pytest.approx(10.0, rel=0.13)


def test_extrapolated_counts_are_rounded_and_kept_in_order() -> None:
    assert sum(spread(((1.0, 10.4), (2.0, 10.2), (INF, 20.6)))) == 21
    arm = counted_arm("error_rate", count=10.6, total=10.4)
    assert (arm.errors, arm.requests) == (10, 10)
    conversions = counted_arm("conversion_rate", count=3.2, total=99.6)
    assert (conversions.conversions, conversions.exposures) == (3, 100)


@pytest.mark.parametrize(
    ("value", "at_most", "breached"),
    [(0.02, True, True), (0.01, True, False), (0.005, False, True), (0.02, False, False)],
)
def test_a_limit_is_the_number_against_its_bound(
    value: float, at_most: bool, breached: bool
) -> None:
    result = limit_result(value, 0.01, at_most=at_most)
    assert result.regressed is breached
    assert (result.delta, result.tolerance) == (value, 0.01)
