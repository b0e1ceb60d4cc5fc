"""Each arm's own latency in the gate's evidence: p50/p95/p99 from its histogram."""

from __future__ import annotations

import math
from datetime import timedelta

import orjson
import pytest

from controller.core.common.histogram import BUCKET_COUNT, EDGE_COUNT, EDGES_MS, bucket_of
from controller.core.machine.gate import evaluate
from controller.core.reading.wording import ms_text
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.latency import arm_latency, histogram_quantile, latency_evidence
from tests.support.documents import as_read
from tests.unit.core.machine.gate.test_gate import T0, arm, rollout


def counts(*placed: tuple[int, int]) -> tuple[int, ...]:
    """A histogram with ``n`` requests in bucket ``index`` for each ``(index, n)``."""
    hist = [0] * BUCKET_COUNT
    for index, n in placed:
        hist[index] += n
    return tuple(hist)


TEN_MS = bucket_of(10.0)  # [10.0, 11.22) ms


@pytest.mark.parametrize(
    ("case", "hist", "p50", "p95", "p99"),
    [
        ("no latency events", counts(), None, None, None),
        # Below 0.1 ms the interpolation is linear from zero.
        ("all under 0.1 ms", counts((0, 100)), 0.05, 0.095, 0.099),
        # Inside a bucket it is geometric: the median of [10, 11.22) is their geometric mean.
        ("all in one bucket", counts((TEN_MS, 10)), 10.593, 11.156, 11.207),
        # The overflow bucket has no width: every quantile is its low edge, 63.1 s.
        ("all past a minute", counts((EDGE_COUNT, 3)), 63095.734, 63095.734, 63095.734),
        # A slow tail of 2% moves p99 into its bucket (100 to 112 ms), barely the median.
        ("slow tail", counts((TEN_MS, 98), (TEN_MS + 20, 2)), 10.605, 11.181, 105.925),
    ],
)
def test_arm_latency(
    case: str, hist: tuple[int, ...], p50: float | None, p95: float | None, p99: float | None
) -> None:
    expected = {"p50": p50, "p95": p95, "p99": p99, "count": sum(hist)}
    assert arm_latency(hist) == expected, case


@pytest.mark.parametrize("hist", [counts((3, 1)), counts((TEN_MS, 7), (60, 5), (EDGE_COUNT, 1))])
def test_arm_latency_interpolates_as_the_gate_does(hist: tuple[int, ...]) -> None:
    shown = as_read(arm_latency(hist))
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = histogram_quantile(hist, q)
        assert exact is not None
        assert shown[name] == pytest.approx(exact, abs=0.0005)


def test_arm_latency_refuses_a_histogram_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="bucket counts"):
        arm_latency((1, 2, 3))


def test_latency_evidence_is_both_arms_and_small() -> None:
    busy = counts(*((i, 2**40) for i in range(BUCKET_COUNT)))
    evidence = as_read(latency_evidence(busy, counts()))
    assert set(evidence) == {"treatment", "control"}
    assert evidence["control"]["p95"] is None
    assert evidence["treatment"]["p50"] == pytest.approx(EDGES_MS[57], rel=0.2)
    assert len(orjson.dumps(evidence)) < 256


def test_the_gate_publishes_each_arms_latency() -> None:
    treatment = arm(units=1_111, latency=40.0)
    control = ArmAggregate(units=1_000, requests=100)  # requests with no latency recorded
    aggregates = FlagAggregates("f", frozenset({1}), treatment, control)
    verdict = evaluate(rollout(), aggregates, T0 + timedelta(hours=1))
    latency = as_read(verdict.evidence)["latency"]
    assert latency["control"] == {"p50": None, "p95": None, "p99": None, "count": 0}
    assert latency["treatment"]["count"] == treatment.requests
    low, high = EDGES_MS[bucket_of(40.0) - 1], EDGES_MS[bucket_of(40.0)]
    for name in ("p50", "p95", "p99"):
        assert low <= latency["treatment"][name] <= high


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0421, "0.04 ms"),
        (0.999, "1.00 ms"),
        (21.04, "21.0 ms"),
        (99.94, "99.9 ms"),
        (100.4, "100 ms"),
        (63095.734, "63,096 ms"),
        (None, "-"),
        (math.inf, "-"),
        (math.nan, "-"),
        (-1.0, "-"),
    ],
)
def test_ms_text(value: float | None, text: str) -> None:
    assert ms_text(value) == text
