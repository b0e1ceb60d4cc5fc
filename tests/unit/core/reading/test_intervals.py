"""An interval rounded for people keeps its relation to the tolerance: boundary tables."""

from __future__ import annotations

import math

import pytest

from controller.core.reading.intervals import MAX_PLACES, rounded_interval
from controller.core.reading.wording import harm_edge, limit_text, quantity_text

INF = math.inf
NAN = math.nan


def side(value: float, limit: float) -> int:
    return (value > limit) - (value < limit)


def read(text: str) -> float:
    return float(text.replace(",", "")) if text != "0" else 0.0


@pytest.mark.parametrize(
    ("values", "limit", "expected"),
    [
        # The rollback that read "+7 pp [0, +13]" against a tolerance of 0.
        ((7.0, 0.39, 13.0), 0.0, ("+7.0", "+0.4", "+13.0", "0")),
        ((7.0, 0.39, 12.9), None, ("+7", "0", "+13", "")),
        # Just above, just below, and at a tolerance of 2.0 pp.
        ((7.0, 2.04, 13.0), 2.0, ("+7.00", "+2.04", "+13.00", "+2.00")),
        ((1.0, -3.0, 1.96), 2.0, ("+1.00", "-3.00", "+1.96", "+2.00")),
        ((7.0, 2.0, 13.0), 2.0, ("+7.0", "+2.0", "+13.0", "+2.0")),
        # A tolerance with more digits than two significant ones: written as finely.
        ((5.0, 1.21, 9.0), 1.23, ("+5.00", "+1.21", "+9.00", "+1.23")),
        ((5.0, 1.23, 9.0), 1.23, ("+5.0", "+1.2", "+9.0", "+1.2")),
        # Higher is better: the edge is minus the tolerance.
        ((-7.0, -13.0, -2.001), -2.0, ("-7.000", "-13.000", "-2.001", "-2.000")),
        ((-1.0, -3.0, 0.5), -1.0, ("-1.0", "-3.0", "+0.5", "-1.0")),
        # Latency in ms: far apart values need no more places.
        ((212.0, 40.0, 380.0), 35.0, ("+212", "+40", "+380", "+35")),
        ((212.0, 35.2, 380.0), 35.0, ("+212.0", "+35.2", "+380.0", "+35.0")),
        # Tiny values beside a zero tolerance: their exact digits, never "0".
        ((1e-9, 3e-12, 2e-9), 0.0, ("+1e-09", "+3e-12", "+2e-09", "0")),
        ((0.0, -1e-20, 1e-20), 0.0, ("0", "-1e-20", "+1e-20", "0")),
        # Too close for the places allowed: exact digits, and the edge's too.
        ((7.0, 2.0000000000000004, 13.0), 2.0, ("+7", "+2.0000000000000004", "+13", "+2.0")),
        # Huge values: two significant digits, far from the edge.
        ((3e18, 1e18, 5e18), 0.0, ("+3e+18", "+1e+18", "+5e+18", "0")),
        ((1.5e7, 1e6, 2e7), 0.0, ("+15,000,000", "+1,000,000", "+20,000,000", "0")),
        # Infinities and NaN are not written; the finite values still keep their side.
        ((0.5, -INF, INF), 0.0, ("+0.50", "", "", "0")),
        ((0.5, 0.01, INF), 0.0, ("+0.50", "+0.01", "", "0")),
        ((NAN, 0.2, 0.3), 0.0, ("", "+0.20", "+0.30", "0")),
        ((0.5, 0.1, 0.9), INF, ("+0.50", "+0.10", "+0.90", "")),
    ],
)  # fmt: skip
def test_rounded_interval(
    values: tuple[float, float, float], limit: float | None, expected: tuple[str, ...]
) -> None:
    shown = rounded_interval(*values, limit)
    assert (shown.delta, shown.lower, shown.upper, shown.limit) == expected


GRID = [
    (tolerance, bound)
    for tolerance in (0.0, 0.001, 0.02, 0.0123, 0.5, 35.0, 1234.5)
    for bound in (
        tolerance,
        tolerance + 1e-9,
        tolerance - 1e-9,
        tolerance * 1.004 + 1e-6,
        tolerance * 0.996 - 1e-6,
        tolerance + 0.0039,
        tolerance - 0.0039,
    )
]


@pytest.mark.parametrize(("tolerance", "bound"), GRID)
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_no_value_crosses_or_meets_the_edge_when_it_does_not(
    tolerance: float, bound: float, direction: float
) -> None:
    edge, bound = direction * tolerance, direction * bound
    values = (bound + direction * 5.0, bound, bound + direction * 9.0)
    shown = rounded_interval(*values, edge)
    for value, text in zip(values, (shown.delta, shown.lower, shown.upper), strict=True):
        assert side(read(text), read(shown.limit)) == side(value, edge), (value, text, shown)
    assert shown.places <= MAX_PLACES


@pytest.mark.parametrize(
    ("metric", "test", "tolerance", "direction", "expected", "beside"),
    [
        ("error_rate", (0.07, 0.0039, 0.129), 0.0, "lower_is_better",
         "error rate +7.0 pp [+0.4, +12.9] (+250%)", "0 pp"),
        ("error_rate", (0.07, 0.0204, 0.129), 0.02, "lower_is_better",
         "error rate +7.00 pp [+2.04, +12.90] (+250%)", "2.00 pp"),
        # A relative tolerance arrives absolute (10% of a control at 3%: 0.3 pp).
        ("error_rate", (0.004, 0.00301, 0.006), 0.003, "lower_is_better",
         "error rate +0.400 pp [+0.301, +0.600] (+14%)", "0.300 pp"),
        ("conversion_rate", (-0.03, -0.05, -0.0101), 0.01, "higher_is_better",
         "conversion rate -3.00 pp [-5.00, -1.01] (-107%)", "1.00 pp"),
        ("latency_p95", (212.0, 35.2, 380.0), 35.0, "lower_is_better",
         "p95 latency +212.0 ms [+35.2, +380.0]", "35.0 ms"),
        ("latency_p95", (15.0, -INF, INF), 5.0, "lower_is_better",
         "p95 latency +15 ms (interval not yet bounded)", "5.0 ms"),
    ],
)  # fmt: skip
def test_quantity_and_its_tolerance_read_in_the_same_digits(
    metric: str,
    test: tuple[float, float, float],
    tolerance: float,
    direction: str,
    expected: str,
    beside: str,
) -> None:
    limit = harm_edge(tolerance, direction)
    assert limit is not None
    assert quantity_text(metric, *test, 0.028, limit=limit) == expected
    assert limit_text(metric, limit, *test) == beside


def test_harm_edge() -> None:
    assert harm_edge(0.02, "lower_is_better") == 0.02
    assert harm_edge(0.02, "higher_is_better") == -0.02
    assert harm_edge(None, "lower_is_better") is None
    assert harm_edge(INF, None) is None
    assert limit_text("error_rate", -0.02, 0.01, -0.03, 0.05, sign=True) == "-2.0 pp"
    assert limit_text("error_rate", INF, 0.01, 0.0, 0.02) == "unbounded"
