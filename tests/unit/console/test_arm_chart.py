"""Each arm's own value over time, drawn beside Δ from the gate history's counts."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from controller.console.arm_chart import arm_chart, arm_points, arm_text, ms_text, share_text
from controller.console.charts import Mark
from controller.console.figures import GuardrailSpec, figures
from controller.core.reading.served_history import RolloutHistory


def point(ts_ms: int, t: tuple[int, int], c: tuple[int, int], **over: Any) -> dict[str, Any]:
    """A served gate point whose arms made ``t`` and ``c`` (errors, requests)."""
    arms = {
        "treatment": {
            "units": 9,
            "exposures": 9,
            "requests": t[1],
            "errors": t[0],
            "conversions": 3,
        },
        "control": {"units": 9, "exposures": 9, "requests": c[1], "errors": c[0], "conversions": 1},
    }
    served = {"ts_ms": ts_ms, "ts": "", "stage": 0, "percent": 5.0, "verdict": "hold", "srm_p": 1.0}
    return served | {"arms": arms, "guardrails": {}} | over


SERVED = {
    "flag": "f",
    "rollout_id": "r",
    "stages": [
        {"stage": 0, "percent": 5.0, "points": [point(1_000, (1, 100), (2, 100))]},
        {"stage": 1, "percent": 25.0, "points": [
            point(61_000, (6, 100), (2, 100), stage=1),
            point(62_000, (1, 0), (2, 100), stage=1),  # no requests in treatment: no rate
            point(63_000, (True, 100), (2, 100), stage=1),  # not a count
            "junk",
            point(-5, (1, 100), (1, 100), stage=1),  # not a time
        ]},
    ],
}  # fmt: skip


def read(served: dict[str, Any]) -> RolloutHistory:
    history = RolloutHistory.read(served)
    assert history is not None
    return history


HISTORY = read(SERVED)


def test_the_points_are_each_arms_rate_at_each_gate() -> None:
    rates = [(p.ts_ms, p.treatment, p.control) for p in arm_points(HISTORY, "error_rate")]
    assert rates == [(1_000, 0.01, 0.02), (61_000, 0.06, 0.02)]
    conversions = arm_points(HISTORY, "conversion_rate")
    assert (conversions[0].treatment, conversions[0].control) == (3 / 9, 1 / 9)
    assert arm_points(HISTORY, "latency_p95") == []  # the history keeps no per-arm latency


def test_the_chart_draws_both_arms_in_percent_with_its_words() -> None:
    svg = arm_chart(arm_points(HISTORY, "error_rate"), metric="error_rate",
                    stages=[Mark(61_000, "stage 2/2 (25%)")])  # fmt: skip
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg" class="arms-chart"')
    assert svg.count("<polyline") == 2
    assert "treatment 6.0%" in svg
    assert "control 2.0%" in svg
    assert '<line class="stage" x1=' in svg
    assert (
        '<title id="ta-error-rate">error rate: each arm&#x27;s own value over time</title>' in svg
    )
    text = arm_text(arm_points(HISTORY, "error_rate"), "error_rate")
    assert text == "error rate per arm, so far in each stage: latest treatment 6.0%, control 2.0%."
    assert "no per-arm data" in arm_chart([], metric="error_rate")
    assert "keeps no per-arm value" in arm_text([], "conversion_value")
    assert arm_text([], "latency_p99") == "p99 latency per arm: no data yet."


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.02, "2.0%"), (0.0035, "0.35%"), (0.5, "50%"), (0.0, "0%"), (float("nan"), "-")],
)
def test_share_text(value: float, shown: str) -> None:
    assert share_text(value) == shown


def test_a_figure_carries_its_arms_where_the_metric_is_a_rate() -> None:
    error_rate, latency = figures(
        HISTORY, (), [GuardrailSpec("error_rate"), GuardrailSpec("latency_p95")]
    )
    assert error_rate.per_arm
    assert len(error_rate.arms) == 2
    assert "<polyline" in error_rate.arms_svg()
    assert not latency.per_arm


def quantiles(p50: object, p95: object, p99: object) -> dict[str, object]:
    return {"p50": p50, "p95": p95, "p99": p99}


LATENCY_SERVED = {
    "flag": "f",
    "rollout_id": "r",
    "stages": [
        {"stage": 0, "percent": 5.0, "points": [
            point(1_000, (1, 100), (1, 100)),  # recorded before the arms' latency was kept
            point(2_000, (1, 100), (1, 100), latency=None),
            point(3_000, (1, 100), (1, 100), latency={
                "treatment": quantiles(10.0, 40.5, 90.0), "control": quantiles(9.0, 30.25, 80.0),
            }),
            point(4_000, (1, 100), (1, 100), latency={  # control has no requests yet
                "treatment": quantiles(10.0, 41.0, 95.0), "control": quantiles(None, None, None),
            }),
            point(5_000, (1, 100), (1, 100), latency={"treatment": quantiles(1, 2, 3)}),
            point(6_000, (1, 100), (1, 100), latency={  # beyond any latency: not drawn
                "treatment": quantiles(1, 2, 1e12), "control": quantiles(1, 2, 3),
            }),
            point(7_000, (1, 100), (1, 100), latency={
                "treatment": quantiles(11.0, 60.0, 99.0), "control": quantiles(9.0, 31.0, 81.0),
            }),
        ]},
    ],
}  # fmt: skip
LATENCY_HISTORY = read(LATENCY_SERVED)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("latency_p95", [(3_000, 40.5, 30.25), (6_000, 2.0, 2.0), (7_000, 60.0, 31.0)]),
        # the damaged p99 at 6 s is left out
        ("latency_p99", [(3_000, 90.0, 80.0), (7_000, 99.0, 81.0)]),
        ("latency_exceedance", []),
    ],
)
def test_latency_points_are_each_arms_quantile_where_both_were_kept(
    metric: str, expected: list[tuple[int, float, float]]
) -> None:
    got = [(p.ts_ms, p.treatment, p.control) for p in arm_points(LATENCY_HISTORY, metric)]
    assert got == expected


def test_the_latency_chart_draws_both_arms_in_ms() -> None:
    points = arm_points(LATENCY_HISTORY, "latency_p95")
    svg = arm_chart(points, metric="latency_p95")
    assert svg.count("<polyline") == 2
    assert "treatment 60 ms" in svg
    assert "control 31 ms" in svg
    assert re.search(r'class="tick"[^>]*>0 ms</text>', svg)  # the axis in ms, not %
    assert re.search(r'class="tick"[^>]*>66 ms</text>', svg)
    assert arm_text(points, "latency_p95") == (
        "p95 latency per arm, so far in each stage: latest treatment 60 ms, control 31 ms."
    )
    (figure,) = figures(LATENCY_HISTORY, (), [GuardrailSpec("latency_p95")])
    assert figure.per_arm
    assert 'data-metric="latency_p95"' in figure.arms_svg()


@pytest.mark.parametrize(
    ("value", "shown"), [(120.0, "120 ms"), (2.5, "2.5 ms"), (0.25, "0.25 ms"), (math.inf, "-")]
)
def test_ms_text(value: float, shown: str) -> None:
    assert ms_text(value) == shown
