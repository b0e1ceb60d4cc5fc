"""One way to write a number, pinned: rates in pp with the lift in %, latency in ms, intervals."""

from __future__ import annotations

import math

import pytest

from controller.core.reading.intervals import decimals_for, signed
from controller.core.reading.wording import (
    amount_text,
    control_rate,
    guardrail_text,
    metric_unit,
    quantity_text,
    relative_lift,
)

INF = math.inf
NAN = math.nan


@pytest.mark.parametrize(
    ("metric", "delta", "lower", "upper", "baseline", "expected"),
    [
        ("error_rate", 0.03613, 0.005004, 0.06725, 0.05, "error rate +3.6 pp [+0.5, +6.7] (+72%)"),
        ("error_rate", -0.012, -0.03, 0.004, 0.2, "error rate -1.2 pp [-3.0, +0.4] (-6.0%)"),
        ("error_rate", 0.03, 0.01, 0.05, None, "error rate +3.0 pp [+1.0, +5.0]"),
        ("error_rate", 0.03, 0.01, 0.05, 0.0, "error rate +3.0 pp [+1.0, +5.0]"),
        (
            "conversion_rate",
            -0.0004,
            -0.0009,
            0.0001,
            0.1,
            "conversion rate -0.040 pp [-0.090, +0.010] (-0.40%)",
        ),
        (
            "latency_exceedance",
            0.25,
            0.1,
            0.4,
            None,
            "share of slow requests +25 pp [+10, +40]",
        ),
        ("latency_p95", 212.3, 40.1, 380.0, None, "p95 latency +212 ms [+40, +380]"),
        ("latency_p95", 2.156, 0.4661, 3.847, None, "p95 latency +2.2 ms [+0.5, +3.8]"),
        ("latency_p99", 0.0, -0.2, 0.3, None, "p99 latency 0 ms [-0.20, +0.30]"),
        ("conversion_value", -1.2, -2.0, -0.4, None, "conversion value -1.2 [-2.0, -0.4]"),
        # Tiny values round to zero rather than turning into scientific notation.
        ("error_rate", 1e-12, -1e-12, 3e-12, 0.01, "error rate 0 pp [0, 0] (0%)"),
        # Huge values keep their digits, grouped; beyond 1e15 two significant digits.
        (
            "latency_p99",
            1.5e7,
            1e6,
            2e7,
            None,
            "p99 latency +15,000,000 ms [+1,000,000, +20,000,000]",
        ),
        ("conversion_value", 3e18, 1e18, 5e18, None, "conversion value +3e+18 [+1e+18, +5e+18]"),
        # NaN and infinity are never printed.
        ("latency_p99", 15.0, -INF, INF, None, "p99 latency +15 ms (interval not yet bounded)"),
        (
            "error_rate",
            0.02,
            0.01,
            INF,
            0.1,
            "error rate +2.0 pp (interval not yet bounded) (+20%)",
        ),
        ("error_rate", NAN, 0.0, 1.0, 0.1, "error rate: no estimate yet"),
        ("latency_p95", INF, 0.0, 1.0, None, "p95 latency: no estimate yet"),
        (
            "error_rate",
            0.01,
            NAN,
            0.02,
            0.1,
            "error rate +1.0 pp (interval not yet bounded) (+10%)",
        ),
        ("error_rate", 0.01, 0.0, 0.02, NAN, "error rate +1.0 pp [0, +2.0]"),
    ],
)
def test_quantity_text(
    metric: str, delta: float, lower: float, upper: float, baseline: float | None, expected: str
) -> None:
    text = quantity_text(metric, delta, lower, upper, baseline)
    assert text == expected
    assert "nan" not in text.lower()
    assert "inf" not in text.lower()


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [(3.6, 1, "+3.6"), (-0.05, 2, "-0.05"), (0.0, 1, "0"), (-0.004, 2, "0"), (1234.0, 0, "+1,234")],
)
def test_signed(value: float, decimals: int, expected: str) -> None:
    assert signed(value, decimals) == expected


@pytest.mark.parametrize(
    ("scale", "expected"),
    [(380.0, 0), (6.7, 1), (1.0, 1), (0.5, 2), (0.09, 3), (1e-9, 6), (0.0, 0), (INF, 0), (NAN, 0)],
)
def test_decimals_for(scale: float, expected: int) -> None:
    assert decimals_for(scale) == expected


@pytest.mark.parametrize(
    ("delta", "baseline", "expected"),
    [
        (0.036, 0.05, "+72%"),
        (-0.001, 0.2, "-0.50%"),
        (0.01, None, None),
        (0.01, 0.0, None),
        (0.01, -1.0, None),
        (0.01, INF, None),
        (0.01, 1e-300, "+1e+300%"),
    ],
)
def test_relative_lift(delta: float, baseline: float | None, expected: str | None) -> None:
    assert relative_lift(delta, baseline) == expected


def test_units() -> None:
    assert [metric_unit(m) for m in ("error_rate", "latency_p95", "conversion_value")] == [
        "pp",
        "ms",
        "",
    ]


ARMS = {"control": {"errors": 5, "requests": 100, "conversions": 0, "exposures": 0}}


@pytest.mark.parametrize(
    ("metric", "test", "arms", "expected"),
    [
        (
            "error_rate",
            {"delta": 0.036, "lower": 0.005, "upper": 0.067},
            ARMS,
            "error rate +3.6 pp [+0.5, +6.7] (+72%)",
        ),
        (
            "error_rate",
            {"delta": 0.036, "lower": "-inf", "upper": "inf"},
            None,
            "error rate +3.6 pp (interval not yet bounded)",
        ),
        (
            "conversion_rate",
            {"delta": 0.01, "lower": 0.0, "upper": 0.02},
            ARMS,
            "conversion rate +1.0 pp [0, +2.0]",
        ),
        ("latency_p95", "insufficient data", ARMS, "p95 latency: too few events to test yet"),
        (
            "latency_p95",
            {"delta": True, "lower": "x", "upper": None},
            ARMS,
            "p95 latency: no estimate yet",
        ),
    ],
)
def test_guardrail_text_reads_served_evidence(
    metric: str, test: object, arms: object, expected: str
) -> None:
    assert guardrail_text(metric, test, arms) == expected


def test_control_rate_is_defensive() -> None:
    assert control_rate("error_rate", ARMS) == 0.05
    assert control_rate("latency_p95", ARMS) is None
    assert control_rate("error_rate", {"control": {"errors": 1, "requests": 0}}) is None
    assert control_rate("error_rate", "arms") is None


def test_unnamed_and_amounts() -> None:
    assert quantity_text("error_rate", 0.036, 0.005, 0.067, 0.05, named=False) == (
        "+3.6 pp [+0.5, +6.7] (+72%)"
    )
    assert quantity_text("latency_p95", NAN, 0, 0, named=False) == "no estimate yet"
    assert [amount_text(m, v) for m, v in (("error_rate", 0.02), ("latency_p95", 35.0))] == [
        "2.0 pp",
        "35 ms",
    ]
    assert amount_text("conversion_value", -1.5) == "1.5"
    assert amount_text("error_rate", INF) == "unbounded"
    assert amount_text("error_rate", 0.0) == "0 pp"
