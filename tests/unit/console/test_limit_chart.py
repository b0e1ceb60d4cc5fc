"""A stage gated on absolute limits is charted: the treated units' rate with its band against
the limit, on the console while it runs and after, and in both forms of the report."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest

from controller.console.arm_chart import share_text
from controller.console.charts import ChartPoint
from controller.console.figures import NOT_COMPARED, GuardrailSpec, figures
from controller.console.limit_chart import describe_limit, limit_chart
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.machine.gate import evaluate
from controller.core.reading import history
from controller.core.reading.served_history import RolloutHistory
from controller.core.reading.views import RolloutStatus, describe
from controller.core.rollouts.rollout import Rollout, Verdict
from controller.core.stats.aggregates import ArmAggregate
from controller.ctl.report.render import html_page, markdown
from controller.ctl.report.report import from_served
from tests.unit.core.machine.gate import test_gate as table
from tests.unit.core.machine.gate import test_limit_proof as limit_proof

GATES = [(125, 1), (279, 4), (864, 15)]
"""Requests and errors the staff ring had sent at each recorded gate."""


def gated(requests: int, errors: int, **limits: object) -> tuple[Rollout, Verdict]:
    rollout = limit_proof.limit_stage(**limits)
    data = table.data(limit_proof.treated(requests, errors), ArmAggregate())
    return rollout, evaluate(rollout, data, limit_proof.LATE)


def served_history(gates: list[tuple[int, int]] = GATES) -> RolloutHistory:
    points = []
    for i, (requests, errors) in enumerate(gates):
        rollout, verdict = gated(requests, errors)
        at = table.T0 + timedelta(seconds=10 * (i + 1))
        points.append(history.point_of(rollout, verdict, at).as_json())
    stages = [{"stage": 0, "percent": 100.0, "points": points}]
    read = RolloutHistory.read({"flag": "f", "rollout_id": "r", "stages": stages})
    assert read is not None
    return read


def test_a_limit_stage_draws_its_rate_band_and_limit_and_the_guardrail_says_why_it_is_empty() -> (
    None
):
    drawn = figures(served_history(), (), [GuardrailSpec("error_rate")])
    guardrail, limit = drawn
    assert (guardrail.limit, guardrail.points, guardrail.empty) == (None, (), NOT_COMPARED)
    assert NOT_COMPARED in guardrail.svg()
    assert "no data yet" not in guardrail.svg()
    assert (limit.metric, limit.limit, limit.tolerance) == ("error_rate", 0.05, 0.05)
    assert [round(p.delta, 4) for p in limit.points] == [round(e / r, 4) for r, e in GATES]
    svg = limit.svg()
    assert 'data-limit="error_rate"' in svg
    assert '<line class="tolerance limit"' in svg
    assert 'data-value="0.05"' in svg
    assert svg.count('<circle class="point"') == len(GATES)
    assert '<polygon class="bound"' in svg
    assert not limit.per_arm
    assert limit.text().endswith(
        "latest error rate 1.7% [0, 4.5%] against at most 5.0%; shown under it."
    )


def point(delta: float, lower: float, upper: float, at: int = 1_000) -> ChartPoint:
    return ChartPoint(at, 0, delta, lower, upper, "stage 1/2 (100%)")


@pytest.mark.parametrize(
    ("points", "said"),
    [
        ([], "error_rate limit: no test yet."),
        (
            [point(0.0141, 0.0, 0.072)],
            "error_rate limit: 1 points; latest error rate 1.4% [0, 7.2%] against at most"
            " 5.0%; not shown above, nor yet under.",
        ),
        (
            [point(0.031, 0.012, 0.04996)],  # a hair under: never reads equal to the limit
            "error_rate limit: 1 points; latest error rate 3.100% [1.200%, 4.996%] against at"
            " most 5.000%; shown under it.",
        ),
        (
            [point(0.02, 0.0, 0.09), point(0.12, 0.08, 0.16, at=61_000)],
            "error_rate limit: 2 points; latest error rate 12% [8%, 16%] against at most 5.0%;"
            " breached at 00:01:01 in stage 1/2 (100%).",
        ),
    ],
)
def test_a_limit_chart_says_what_it_shows(points: list[ChartPoint], said: str) -> None:
    assert describe_limit(points, 0.05, name="error_rate", declared=0.05) == said
    svg = limit_chart(points, 0.05, name="error_rate", declared=0.05)
    assert html.escape(said, quote=False) in svg
    assert ('<circle class="crossing"' in svg) == ("breached" in said)


def test_a_latency_limit_charts_the_share_of_slow_requests() -> None:
    svg = limit_chart([point(0.03, 0.01, 0.045)], 0.05, name="latency_p95_ms", declared=200)
    assert "share of requests slower than 200 ms" in svg
    assert "shown under it" in svg


def page(status: dict[str, Any], drawn: RolloutHistory) -> str:
    rollout = limit_proof.limit_stage()
    served = describe(rollout, None, limit_proof.LATE).served() | status
    specs = [GuardrailSpec("error_rate")]
    return rollout_detail(RolloutPage(RolloutStatus.model_validate(served), drawn, (), (), specs))


def test_the_console_charts_a_running_limit_stage_and_says_what_it_could_catch() -> None:
    _, verdict = gated(279, 4)  # 1.4%: under the limit, not yet shown so
    evidence = verdict.evidence.wire()
    html_page_ = page({"phase": "running", "evidence": evidence}, served_history())
    section = re.search(r'<section aria-labelledby="h-limits">.*?</section>', html_page_)
    assert section is not None
    said = section.group(0)
    assert '<figure class="limit" data-limit="error_rate">' in said
    assert "279 requests: only an error rate above" in said
    assert "would be caught" in said
    assert 'data-limit="error_rate"' in said


def test_the_console_still_charts_the_limit_stage_after_the_rollout_completes() -> None:
    html_page_ = page({"phase": "completed", "evidence": {}}, served_history())
    assert '<section aria-labelledby="h-limits">' in html_page_
    assert html_page_.count('<circle class="point"') == len(GATES)
    assert 'class="limit-state"' not in html_page_  # no gate now: the chart alone


def test_both_reports_chart_the_limit_stage_over_the_whole_rollout() -> None:
    drawn = served_history()
    status = {
        "flag": "f", "rollout_id": "r", "plan": "default", "phase": "completed", "stage": 1,
        "stages": 2, "stage_percents": [100.0, 100.0], "percent": 100.0, "flag_version": 1,
        "started_at": "2026-11-22T12:00:00+00:00", "time_in_stage_s": 0.0,
        "min_duration_s": 0.0, "min_units_per_arm": 0, "verdict": None,
        "verdict_reason": None, "evidence": {},
    }  # fmt: skip
    served = {"flag": "f", "rollout_id": "r", "stages": [s.model_dump() for s in drawn.stages]}
    report = from_served(status, [], served, limit_proof.LATE)
    limit = next(f for f in report.charts if f.limit is not None)
    text = markdown(report)
    assert "## Guardrails and limits over time" in text
    assert f"- {limit.text()}".replace("[", "\\[").replace("]", "\\]") in text
    assert "| error_rate | stage 1/1 (100%) |" in text
    assert "| 5.0% | shown under |" in text  # 864 requests at 1.7%: shown under 5%
    page_ = html_page(report)
    assert limit.svg() in page_
    assert '<section class="limit" data-limit="error_rate"><h3>error_rate limit</h3>' in page_


def test_the_value_axis_is_sized_to_the_limit_and_the_rate_not_the_first_band() -> None:
    # The first seconds' band reaches 74%; the rate stays near 2% under a 5% limit.
    points = [point(0.0, 0.0, 0.74, at=1_000), point(0.02, 0.0, 0.112, at=11_000)]
    points += [point(0.021, 0.012, 0.04, at=61_000)]
    svg = limit_chart(points, 0.05, name="error_rate", declared=0.05)
    ticks = re.findall(r'<text[^>]*class="tick"[^>]*>([^<]*)</text>', svg)
    assert share_text(0.075) in ticks  # 1.5 times the limit, the larger of limit and rate
    assert share_text(0.74) not in ticks
    limit_y = float(re.search(r'class="tolerance limit"[^>]*y1="([\d.]+)"', svg)[1])  # type: ignore[index]
    plot = re.search(r'<rect x="[\d.]+" y="([\d.]+)"[^>]*height="([\d.]+)"', svg)
    assert plot is not None
    top, height = float(plot[1]), float(plot[2])
    assert top < limit_y < top + height / 2  # the limit sits in the upper half, not the floor


def test_the_band_breaks_between_stages_the_limit_did_not_test() -> None:
    # Stage 1 (100% of a ring) tested, stage 2 (with control) not, stage 3 tested again.
    first = [ChartPoint(t, 0, 0.02, 0.0, 0.06, "ring 1") for t in (1_000, 11_000)]
    last = [ChartPoint(t, 2, 0.02, 0.01, 0.04, "ring 3") for t in (600_000, 610_000)]
    svg = limit_chart([*first, *last], 0.05, name="error_rate", declared=0.05)
    assert svg.count('<polygon class="bound"') == 2
    assert svg.count('<polyline class="delta"') == 2


def test_a_guardrail_with_no_comparison_is_a_line_on_the_page_not_a_blank_chart() -> None:
    _, verdict = gated(279, 4)
    html_page_ = page({"phase": "running", "evidence": verdict.evidence.wire()}, served_history())
    section = re.search(r'<section aria-labelledby="h-guardrails">.*?</section>', html_page_)
    assert section is not None
    assert 'class="guardrail not-compared"' in section[0]
    assert "no comparison" in html.unescape(section[0])
    assert "<svg" not in section[0]


def test_a_stage_without_control_draws_no_delta_nor_arms_from_the_units_outside_it() -> None:
    # A ring of staff at 100%: the units outside the ring are served control but are no
    # control (not randomised); the gate's evidence may still hold a test of them, which
    # the guardrail's state reads as "no comparison", and so must the charts.
    point = served_history().points()[0].model_dump(mode="json")
    tested: dict[str, object] = {"delta": 0.01, "lower": -0.02, "upper": 0.04, "p_value": 0.4}
    tested |= {"tolerance": 0.0, "direction": "lower_is_better", "regressed": False}
    point["guardrails"] = {"error_rate": tested}
    point["arms"]["control"] |= {"units": 2326, "requests": 3667, "errors": 76}
    stages = [{"stage": 0, "percent": 100.0, "points": [point]}]
    read = RolloutHistory.read({"flag": "f", "rollout_id": "r", "stages": stages})
    assert read is not None
    assert read.points()[0].guardrails["error_rate"] is not None
    guardrail, limit = figures(read, (), [GuardrailSpec("error_rate")])
    assert (guardrail.points, guardrail.arms, guardrail.empty) == ((), (), NOT_COMPARED)
    assert len(limit.points) == 1
