"""The charts of one rollout read together: one time axis, the whole band in view, each
stage's wait for data labelled, and no label over another."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import combinations
from typing import Any

import pytest

from controller.console.charts import ChartPoint, Mark, guardrail_chart
from controller.console.figures import GuardrailSpec, figures
from controller.console.labels import CHAR_PX, Label, layout, overlap
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.reading import collecting
from controller.core.reading.served_history import RolloutHistory
from controller.core.reading.views import describe
from controller.ctl.report.render import html_page
from controller.ctl.report.report import from_served
from tests.unit.core.machine.gate.test_gate import EARLY, rollout

SVG = "{http://www.w3.org/2000/svg}"
ERROR = {"p_value": 0.5, "tolerance": 0.01, "direction": "lower_is_better", "regressed": False}
LIMIT = {"rate": 0.01, "lower": 0.0, "upper": 0.04, "ceiling": 0.05, "limit": 0.05}


def arms(units: int) -> dict[str, Any]:
    arm = {"units": units, "exposures": units, "requests": 10 * units, "conversions": 1}
    return {"treatment": arm | {"errors": units}, "control": arm | {"errors": units // 2}}


def point(ts_ms: int, stage: int, units: int, delta: float | None) -> dict[str, Any]:
    """A gate point; ``delta`` None: error rate named without a test (too little data)."""
    test = None if delta is None else ERROR | {"delta": delta, "lower": delta - 0.3,
                                               "upper": delta + 0.6}  # fmt: skip
    return {"ts_ms": ts_ms, "ts": "", "stage": stage, "percent": 5.0, "verdict": "hold",
            "srm_p": 1.0, "arms": arms(units), "guardrails": {"error_rate": test}}  # fmt: skip


def limited(ts_ms: int) -> dict[str, Any]:
    """A gate point of a stage without control: its limit tested, no guardrail."""
    limits = {"error_rate": LIMIT | {"regressed": False}}
    return point(ts_ms, 2, 50, 0.0) | {"guardrails": {}, "limits": limits}


SERVED = {
    "flag": "f",
    "rollout_id": "r",
    "stages": [
        {"stage": 0, "percent": 5.0, "points": [
            point(0, 0, 3, None), point(10_000, 0, 7, None),
            point(20_000, 0, 12, 0.01), point(30_000, 0, 20, 0.02),
        ]},
        {"stage": 1, "percent": 25.0, "points": [
            point(40_000, 1, 4, None), point(50_000, 1, 40, 0.0), point(60_000, 1, 90, 0.001),
        ]},
        {"stage": 2, "percent": 100.0, "points": [limited(70_000), limited(80_000)]},
    ],
}  # fmt: skip


def history() -> RolloutHistory:
    read = RolloutHistory.read(SERVED)
    assert read is not None
    return read


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, flags=re.S)]


def stage_xs(svg: ET.Element) -> dict[str, str]:
    """Each stage line's x by the instant it marks."""
    return {
        line.get("data-ts", ""): line.get("x1", "")
        for line in svg.iter(f"{SVG}line")
        if line.get("class") == "stage"
    }


def texts(svg: ET.Element) -> list[Label]:
    """Every text drawn, as a label with the box it takes."""
    return [
        Label(
            float(t.get("x", 0)),
            float(t.get("y", 0)),
            t.text or "",
            t.get("class", ""),
            t.get("text-anchor", "start"),
        )
        for t in svg.iter(f"{SVG}text")
    ]


def page() -> str:
    status = describe(rollout(), None, EARLY)
    figure = RolloutPage(status, history(), guardrails=[GuardrailSpec("error_rate", 0.01)])
    return rollout_detail(figure)


def report() -> str:
    status = describe(rollout(), None, EARLY).model_dump(mode="json")
    return html_page(from_served(status, [], SERVED, EARLY))


@pytest.mark.parametrize("render", [page, report], ids=["console", "report"])
def test_every_chart_of_a_rollout_puts_a_stage_line_at_the_same_x(render: Any) -> None:
    drawn = svgs(render())
    kinds = {svg.get("class") for svg in drawn}
    assert kinds == {"chart", "arms-chart", "chart limit-chart"}
    xs = [stage_xs(svg) for svg in drawn]
    assert xs[0] == {"40000": xs[0]["40000"], "70000": xs[0]["70000"]}
    assert all(x == xs[0] for x in xs)  # the Δ chart's, the arms' and the limit's alike
    ends = [[t.text for t in texts(svg) if t.cls == "tick" and "UTC" in t.text] for svg in drawn]
    assert all(e == ["00:00:00 UTC", "00:01:20 UTC"] for e in ends)  # one span for all


def test_the_band_is_drawn_whole_with_the_tolerance_in_view() -> None:
    (svg,) = svgs(figures(history(), (), [GuardrailSpec("error_rate", 0.01)])[0].svg())
    height = float(svg.get("viewBox", "").split()[3])
    band = next(p for p in svg.iter(f"{SVG}polygon") if p.get("class") == "bound")
    ys = [float(xy.split(",")[1]) for xy in (band.get("points") or "").split()]
    top, bottom = 20, height - 28  # inside the plot: nothing clipped at its edge
    assert top < min(ys)
    assert max(ys) < bottom
    lines = {ln.get("class"): float(ln.get("y1", 0)) for ln in svg.iter(f"{SVG}line")}
    assert top < lines["tolerance"] < bottom
    # each bound where its value puts it, none flattened at an edge: the band's vertices
    # (upper sides, then lower ones backwards) on one line through zero's
    dots = [c for c in svg.iter(f"{SVG}circle") if c.get("class") == "point"]
    uppers = [float(c.get("data-upper", 0)) for c in dots]
    lowers = [float(c.get("data-lower", 0)) for c in reversed(dots)]
    assert max(uppers) > 0.6  # far above the tolerance: the harm side
    per_unit = (ys[uppers.index(max(uppers))] - lines["zero"]) / max(uppers)
    expected = [lines["zero"] + v * per_unit for v in uppers + lowers]
    assert ys == pytest.approx(expected, abs=0.3)
    assert any(t.cls == "tolerance-label" for t in texts(svg))


def test_each_stage_opens_with_its_wait_for_data_labelled_with_the_units_seen() -> None:
    waits = collecting(history(), "error_rate")
    assert [(w.start_ms, w.end_ms, w.units) for w in waits] == [
        (0, 20_000, 14),
        (40_000, 50_000, 8),
    ]
    (svg,) = svgs(figures(history(), (), [GuardrailSpec("error_rate", 0.01)])[0].svg())
    said = [t.text for t in texts(svg) if t.cls == "collecting-label"]
    assert said == ["collecting: 14 units", "collecting: 8 units"]
    shades = [r for r in svg.iter(f"{SVG}rect") if r.get("class") == "collecting"]
    assert [r.get("data-units") for r in shades] == ["14", "8"]


def test_a_stage_without_control_waits_for_no_guardrail() -> None:
    served = {"flag": "f", "rollout_id": "r", "stages": [SERVED["stages"][2]]}
    read = RolloutHistory.read(served)
    assert read is not None
    assert collecting(read, "error_rate") == []


@pytest.mark.parametrize("render", [page, report], ids=["console", "report"])
def test_no_label_of_any_chart_overlaps_another(render: Any) -> None:
    for svg in svgs(render()):
        drawn = [t for t in texts(svg) if t.cls != "empty"]
        assert len(drawn) >= 4
        clashes = [(a.text, b.text) for a, b in combinations(drawn, 2) if overlap(a, b)]
        assert clashes == []


def test_crowded_labels_are_nudged_apart_or_dropped() -> None:
    # the arms end at one value, stages begin a second apart at the end of the chart
    points = [ChartPoint(1000 * i, 0, 0.0, -0.1, 0.1) for i in range(10)]
    stages = [Mark(8000 + 100 * i, f"stage {i + 2}/9 (5%)") for i in range(6)]
    (svg,) = svgs(guardrail_chart(points, 0.0, metric="error_rate", stages=stages))
    drawn = texts(svg)
    assert all(not overlap(a, b) for a, b in combinations(drawn, 2))
    shown = [t for t in drawn if t.cls == "stage-label"]
    assert 1 <= len(shown) < len(stages)  # what does not fit is left to the table
    same = [Label(100, 50, "treatment 1%", "a", "end"), Label(100, 52, "control 1%", "a", "end")]
    movable = Label(100, 52, "control 1%", "a", "end", step=14)
    nudged = layout([same[0], movable], top=0, bottom=300)
    assert [lb.y for lb in nudged] == [50, 66]
    assert overlap(*same)
    assert CHAR_PX * len("control 1%") == 70
