"""A targeted rollout's report names each stage's ring and what it was compared against."""

from __future__ import annotations

import html
from typing import Any

import pytest

from controller.core.stats.limits import NO_CONTROL
from controller.ctl.report.render import html_page, markdown
from controller.ctl.report.report import from_served
from controller.ctl.report.reporting import _plain
from tests.unit.ctl.report.test_report import ADVANCE, NOW, START, STATUS, at, decision, evidence

STAFF = {"rollout": None, "stage": 'segment("staff")', "percent": 100}
THAI = {"rollout": 'country == "TH"', "stage": "everyone", "percent": 25}
LIMITS = {
    "comparison": NO_CONTROL,
    "limits": {"error_rate": {"limit": 0.01, "test": {"delta": 0.002, "regressed": False}}},
}


@pytest.mark.parametrize(
    ("extra", "audience", "compared"),
    [
        ({}, "", ""),
        ({"audience": STAFF}, 'segment("staff") 100%', "a concurrent control"),
        ({"audience": STAFF, **LIMITS}, 'segment("staff") 100%', "absolute limits"),
        ({"audience": THAI}, 'everyone 25% within country == "TH"', "a concurrent control"),
        ({"audience": "not a ring"}, "", ""),
        ({"audience": {"stage": 5, "percent": "x"}}, "everyone", "a concurrent control"),
    ],
)
def test_each_stage_names_its_ring_and_its_comparison(
    extra: dict[str, Any], audience: str, compared: str
) -> None:
    gated = {**ADVANCE, "evidence": {**evidence(10, 1), **extra, "at_stage": at(0)}}
    report = from_served(STATUS, [START, gated], None, NOW)
    first = report.stages[0]
    assert (first.audience, first.compared) == (audience, compared)
    assert _plain(report)["stages"][0]["audience"] == audience  # type: ignore[index,call-overload]
    md, page = markdown(report), html_page(report)
    if audience:
        line = f"{audience}, compared against {compared}"
        assert f"Audience: {line}." in md.replace("\\", "")
        assert f"<p>Audience: {html.escape(line)}.</p>" in page
    else:
        assert "Audience" not in md
        assert "Audience" not in page


def test_a_hostile_ring_is_escaped_and_cut() -> None:
    ring = {"stage": "<script>" + "x" * 5000, "percent": 5}
    gated = decision("10:00:30", "advance", 1, 0, evidence={**evidence(10, 1), "audience": ring})
    report = from_served(STATUS, [START, gated], None, NOW)
    assert len(report.stages[0].audience) < 500
    assert "<script>" not in html_page(report)
    assert "<script>" not in markdown(report)
