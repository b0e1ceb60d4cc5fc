"""The canary report: stages and numbers from the decisions, who decided, safe rendering."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from controller.ctl.report import build, clock, who
from controller.ctl.report_render import html_page, markdown

NOW = datetime(2026, 11, 22, 10, 5, tzinfo=UTC)
PERCENTS = [1.0, 5.0, 25.0, 50.0, 100.0]


def at(index: int) -> dict[str, Any]:
    percent = PERCENTS[index]
    label = f"stage {index + 1}/5 ({percent:g}%)"
    return {"index": index, "number": index + 1, "of": 5, "percent": percent, "label": label}


def evidence(t_units: int, t_errors: int, *, regressed: bool = False) -> dict[str, Any]:
    return {
        "arms": {
            "treatment": {"units": t_units, "exposures": t_units * 2, "requests": 100,
                          "errors": t_errors, "conversions": 0},
            "control": {"units": 900, "exposures": 1800, "requests": 400, "errors": 8,
                        "conversions": 0},
        },
        "guardrails": {
            "error_rate": {"delta": 0.0204, "lower": 0.0169 if regressed else -0.01,
                           "upper": 0.0239, "tolerance": 0.0, "p_value": 6.5e-69,
                           "regressed": regressed},
            "latency_p99": "insufficient data",
        },
        "srm": {"observed_treatment": t_units, "observed_control": 900,
                "expected_treatment": 101.5, "sequential_p_value": 1.0, "flagged": False},
    }  # fmt: skip


def decision(ts: str, action: str, stage: int, before: int, **over: Any) -> dict[str, Any]:
    phase_after = over.pop("phase_after", "running")
    extra = over.pop("evidence", {})
    return {
        "type": "decision", "flag": "checkout", "rollout_id": "r1", "ts": f"2026-11-22T{ts}Z",
        "kind": over.pop("kind", "gate"), "action": action, "outcome": "applied",
        "reason": over.pop("reason", "guardrails hold"), "stage": stage,
        "phase_before": "running", "phase_after": phase_after,
        "evidence": {**extra, "at_stage": at(before)}, **over,
    }  # fmt: skip


START = decision(
    "10:00:00", "start", 0, 0, kind="command", reason="ship it",
    evidence={"actor": "ana", "key_id": "ops-1"},
)  # fmt: skip
ADVANCE = decision("10:00:30", "advance", 1, 0, evidence=evidence(10, 1))
ROLLBACK = decision(
    "10:01:40", "rollback", 1, 1, phase_after="rolled_back",
    reason="error_rate regressed", evidence=evidence(55, 9, regressed=True),
)  # fmt: skip
STATUS = {
    "flag": "checkout", "rollout_id": "r1", "plan": "default", "phase": "rolled_back",
    "stage": 1, "stages": 5, "stage_percents": PERCENTS, "percent": 0.0,
    "started_at": "2026-11-22T10:00:00+00:00", "evidence": {},
}  # fmt: skip


def test_each_stage_has_the_numbers_of_the_decision_that_ended_it() -> None:
    other = {**ADVANCE, "rollout_id": "r0"}  # an earlier rollout of the flag
    report = build(STATUS, [other, START, ADVANCE, ROLLBACK], None, NOW)
    first, second = report.stages
    assert (first.label, first.outcome, first.duration_s) == ("stage 1/5 (1%)", "advance", 30.0)
    assert (second.label, second.outcome, second.duration_s) == (
        "stage 2/5 (5%)",
        "rollback",
        70.0,
    )
    for stage, source in ((first, ADVANCE), (second, ROLLBACK)):
        arms = source["evidence"]["arms"]
        assert [(a.name, a.units, a.exposures, a.requests, a.errors) for a in stage.arms] == [
            (name, arms[name]["units"], arms[name]["exposures"], arms[name]["requests"],
             arms[name]["errors"])
            for name in ("treatment", "control")
        ]  # fmt: skip
        test = source["evidence"]["guardrails"]["error_rate"]
        error_rate, latency = stage.guardrails
        assert (error_rate.delta, error_rate.lower, error_rate.upper) == (
            test["delta"],
            test["lower"],
            test["upper"],
        )
        assert latency.result == "insufficient data"
    assert second.guardrails[0].result == "regressed"
    assert second.evidence_from == "the rollback decision at 2026-11-22 10:01:40 UTC"
    assert [d.action for d in report.decisions] == ["start", "advance", "rollback"]
    assert report.decisions[0].by == "operator ana (key ops-1)"
    assert report.decisions[2].stage == "stage 2/5 (5%)"


def test_a_running_stage_shows_the_gate_view_and_its_time_so_far() -> None:
    status = {**STATUS, "phase": "running", "percent": 5.0, "evidence": evidence(40, 2)}
    report = build(status, [START, ADVANCE], None, NOW)
    live = report.stages[-1]
    assert live.outcome == "running"
    assert live.duration_s == 270.0
    assert live.evidence_from == "the gate's current view (not decided yet)"
    assert live.arms[0].units == 40


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("command", {"actor": "ana", "key_id": "ops-1"}, "operator ana (key ops-1)"),
        ("command", {}, "operator"),
        ("gate", {}, "engine (gate statistics)"),
        ("monitor", {"monitor": "api"}, "monitor api"),
        ("advisor", {}, "advisor"),
        ("transition", {}, "engine"),
    ],
)
def test_who_decided(kind: str, extra: dict[str, Any], expected: str) -> None:
    assert who({"kind": kind, "evidence": extra}) == expected


def test_history_is_attached_per_stage_or_its_absence_noted() -> None:
    point = {"t": "2026-11-22T10:00:10Z", "guardrails": {"error_rate": {"delta": 0.01}}}
    history = {"flag": "checkout", "stages": [{"stage": 0, "points": [point, "junk"]}]}
    with_history = build(STATUS, [START, ADVANCE, ROLLBACK], history, NOW)
    assert with_history.stages[0].points == [point]
    assert with_history.stages[1].points == []
    without = build(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    assert any("no gate history" in note for note in without.notes)
    odd = build(STATUS, [START], {"stages": "nope"}, NOW)
    assert any("unreadable" in note for note in odd.notes)


@pytest.mark.parametrize(
    "junk",
    [
        {"type": "decision", "flag": "checkout", "rollout_id": "r1"},
        {**ADVANCE, "stage": "two", "evidence": "x"},
        {**ADVANCE, "ts": 10**30},
        {**ROLLBACK, "evidence": {"arms": {"treatment": "x"}, "guardrails": {"e": 5}}},
    ],
)
def test_odd_decisions_cost_a_blank_never_the_report(junk: dict[str, Any]) -> None:
    report = build(STATUS, [START, junk, ROLLBACK], None, NOW)
    assert markdown(report)
    assert html_page(report)


HOSTILE = '<script>alert(1)</script> [x](http://evil) | **b** "q"'


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_escapes_every_value_and_loads_nothing() -> None:
    hostile = {**ROLLBACK, "reason": HOSTILE, "evidence": {
        **ROLLBACK["evidence"], "advisor": {"status": "ok", "action": "advance",
                                            "rationale": HOSTILE, "latency_ms": 10}}}  # fmt: skip
    page = html_page(build({**STATUS, "plan": HOSTILE}, [START, ADVANCE, hostile], None, NOW))
    parsed = Collector()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert set(parsed.tags) <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "dl", "dt",
        "dd", "p", "span", "section", "div", "table", "thead", "tbody", "tr", "th", "td",
    }  # fmt: skip
    assert not [value for name, value in parsed.attrs if name in ("src", "href")]
    assert "http://evil" not in re.sub(r">[^<]*<", "><", page)  # only ever as text
    assert HOSTILE in "".join(parsed.text)


def test_markdown_escapes_every_value() -> None:
    text = markdown(build({**STATUS, "plan": HOSTILE}, [START, ADVANCE, ROLLBACK], None, NOW))
    assert "<script>" not in text
    assert "[x](" not in text
    assert "\\[x\\](http://evil)" in text
    assert "\\<script\\>alert(1)\\</script\\>" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert {line.count(" | ") for line in table_rows[:1]} == {3}


def test_a_chart_hook_draws_each_guardrail_of_a_stage_with_history() -> None:
    point = {"t": "2026-11-22T10:00:10Z", "guardrails": {"error_rate": {"delta": 0.01}}}
    history = {"stages": [{"stage": 0, "points": [point]}]}
    report = build(STATUS, [START, ADVANCE, ROLLBACK], history, NOW)
    drawn: list[tuple[str, int]] = []

    def chart(metric: str, points: Any) -> str:
        drawn.append((metric, len(points)))
        return "<svg><title>chart</title></svg>"

    page = html_page(report, chart=chart)
    assert drawn == [("error_rate", 1), ("latency_p99", 1)]
    assert page.count("<svg>") == 2
    table = html_page(report)
    assert "error_rate over the stage" in table
    assert "0.01" in table


@pytest.mark.parametrize(
    ("iso", "expected"),
    [
        ("2026-11-22T10:01:40.123456+00:00", "2026-11-22 10:01:40 UTC"),
        ("2026-11-22T11:01:40+01:00", "2026-11-22 11:01:40 +0100"),
        ("2026-11-22T10:01:40", "2026-11-22 10:01:40"),
        ("yesterday", "yesterday"),
        (None, "-"),
    ],
)
def test_times_read_as_people_read_them(iso: str | None, expected: str) -> None:
    assert clock(iso) == expected


def test_a_promoted_stage_has_no_gate_numbers_and_a_watch_is_a_stage_of_its_own() -> None:
    promote = decision(
        "10:00:10", "promote", 1, 0, kind="command", evidence={"actor": "ana", "key_id": "k"}
    )
    to_last = decision("10:00:20", "promote", 4, 1, kind="command", reason="to the end")
    watch = decision("10:00:30", "watch", 4, 4, evidence=evidence(500, 5))
    done = decision("10:30:30", "complete", 4, 4, phase_after="completed")
    status = {**STATUS, "phase": "completed", "stage": 4, "percent": 100.0}
    report = build(status, [START, promote, to_last, watch, done], None, NOW)
    assert [(s.label, s.outcome) for s in report.stages] == [
        ("stage 1/5 (1%)", "promote"),
        ("stage 2/5 (5%)", "promote"),
        ("stage 5/5 (100%)", "watch"),
        ("stage 5/5 (100%), watch", "complete"),
    ]
    assert report.stages[0].arms == []
    assert report.stages[2].arms[0].units == 500
    assert report.stages[3].duration_s == 1800.0
    assert report.decisions[1].by == "operator ana (key k)"
    assert "(none)" not in markdown(report)  # stages without numbers just say less
