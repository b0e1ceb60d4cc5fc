"""The canary report: stages and numbers from the decisions, who decided, safe rendering."""

from __future__ import annotations

import html
import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest

from controller.core.reading import history
from controller.core.wire.messages import Decision
from controller.ctl.report.cells import STAGE_HEAD, srm_text
from controller.ctl.report.model import SampleRatio
from controller.ctl.report.render import html_page, markdown
from controller.ctl.report.report import from_served, who

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
        "v": 1, "id": f"{ts}-{action}", "type": "decision", "flag": "checkout",
        "rollout_id": "r1", "ts": f"2026-11-22T{ts}Z", "kind": over.pop("kind", "gate"),
        "action": action, "outcome": "applied",
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
    "stage": 1, "stages": 5, "stage_percents": PERCENTS, "percent": 0.0, "flag_version": 3,
    "started_at": "2026-11-22T10:00:00+00:00", "time_in_stage_s": 0.0, "min_duration_s": 0.0,
    "min_units_per_arm": 100, "verdict": None, "verdict_reason": None, "evidence": {},
}  # fmt: skip


def test_each_stage_has_the_numbers_of_the_decision_that_ended_it() -> None:
    other = {**ADVANCE, "rollout_id": "r0"}  # an earlier rollout of the flag
    report = from_served(STATUS, [other, START, ADVANCE, ROLLBACK], None, NOW)
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
        assert latency.said() == "not yet tested (too few events)"
    assert second.guardrails[0].said() == "regressed (interval wholly above tolerance)"
    assert second.guardrails[0].result == "regressed"
    # +2.0 pp past a tolerance of 0, its interval reaching below it: watched, not "ok"
    assert first.guardrails[0].said() == "watching (above tolerance, not yet significant)"
    assert second.evidence_from == "the rollback decision at 2026-11-22 10:01:40 UTC"
    assert [d.action for d in report.decisions] == ["start", "advance", "rollback"]
    assert report.decisions[0].by == "operator ana (key ops-1)"
    assert report.decisions[2].stage == "stage 2/5 (5%)"


def test_a_running_stage_shows_the_gate_view_and_its_time_so_far() -> None:
    status = {**STATUS, "phase": "running", "percent": 5.0, "evidence": evidence(40, 2)}
    report = from_served(status, [START, ADVANCE], None, NOW)
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
    made = decision("10:00:00", "x", 0, 0, kind=kind, evidence=extra)
    assert who(Decision.model_validate(made)) == expected


def gate(ts: str, stage: int, lower: float, *, verdict: str = "hold") -> dict[str, Any]:
    """A point as ``/rollouts/{flag}/history`` serves it (the stored form, read back)."""
    moment = datetime.fromisoformat(f"2026-11-22T{ts}+00:00")
    test = history.GuardrailPoint(0.0204, lower, 0.0239, 0.5, 0.0, True, lower > 0)
    stored = history.GatePoint(
        ts_ms=int(moment.timestamp() * 1000), stage=stage, percent=PERCENTS[stage],
        verdict=verdict, srm_p=1.0, arms={"treatment": (1,) * 5, "control": (1,) * 5},
        guardrails={"error_rate": test, "latency_p99": None},
    )  # fmt: skip
    decoded = history.decode(history.encode(stored))
    assert decoded is not None
    return decoded.as_json()


def served(*stages: list[dict[str, Any]], rollout_id: str = "r1") -> dict[str, Any]:
    entries = [
        {"stage": i, "percent": PERCENTS[i], "points": points} for i, points in enumerate(stages)
    ]
    return {"flag": "checkout", "rollout_id": rollout_id, "stages": entries}


HISTORY = served(
    [gate("10:00:05", 0, -math.inf), gate("10:00:25", 0, -0.01)],
    [gate("10:00:35", 1, -0.005), gate("10:01:40", 1, 0.0169, verdict="rollback")],
    [],
    [],
    [],
)


def test_the_served_history_becomes_one_figure_per_guardrail_over_the_rollout() -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], HISTORY, NOW)
    error_rate, latency = report.charts
    assert (error_rate.metric, latency.metric) == ("error_rate", "latency_p99")
    assert [p.label for p in error_rate.points] == ["stage 1/5 (1%)"] * 2 + ["stage 2/5 (5%)"] * 2
    assert latency.points == ()
    # the crossing is the rollback's gate, marked with the stage it began and the decisions
    crossed = error_rate.crossed
    assert crossed is not None
    assert crossed.ts_ms == int(datetime.fromisoformat(ROLLBACK["ts"]).timestamp() * 1000)
    assert crossed.lower == ROLLBACK["evidence"]["guardrails"]["error_rate"]["lower"]
    assert [m.label for m in error_rate.stages] == ["stage 2/5 (5%)"]
    assert [m.label for m in error_rate.decisions] == ["start", "advance", "rollback"]
    assert "crossed the tolerance at 10:01:40 in stage 2/5 (5%)" in error_rate.text()
    assert not any("history" in note for note in report.notes)


@pytest.mark.parametrize(
    ("served_history", "note"),
    [
        (None, "serves no gate history"),
        ({"stages": "nope"}, "unreadable"),
        (served([gate("10:00:05", 0, 0.1)], rollout_id="r0"), "of another rollout"),
        (served([], []), "no guardrail test yet"),
    ],
)
def test_without_a_usable_history_there_are_no_charts_and_a_note_says_why(
    served_history: dict[str, Any] | None, note: str
) -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], served_history, NOW)
    assert not any(figure.points for figure in report.charts)
    assert any(note in n for n in report.notes), report.notes
    assert "<svg" not in html_page(report) or "no data yet" in html_page(report)


@pytest.mark.parametrize(
    "junk",
    [
        "x",
        {"ts_ms": "soon", "stage": 0, "guardrails": {"error_rate": {"delta": 1}}},
        {"ts_ms": 5, "stage": True, "guardrails": {"error_rate": {}}},
        {"ts_ms": 5, "stage": 0, "guardrails": {"error_rate": {"delta": "NaN", "lower": 0}}},
        {"ts_ms": 5, "stage": 0, "guardrails": ["error_rate"]},
        {"ts_ms": -5, "stage": 0, "guardrails": {"error_rate": {"delta": 1, "lower": 0}}},
    ],
)
def test_a_damaged_history_point_is_left_out_of_the_chart(junk: Any) -> None:
    damaged = served([junk, gate("10:00:05", 0, -0.01)])
    (error_rate, _) = from_served(STATUS, [START], damaged, NOW).charts
    assert len(error_rate.points) == 1
    assert "<svg" in html_page(from_served(STATUS, [START], damaged, NOW))


@pytest.mark.parametrize(
    "junk",
    [
        {**ROLLBACK, "evidence": {"arms": {"treatment": "x"}, "guardrails": {"e": 5}}},
        {**ADVANCE, "evidence": {"at_stage": "x", "arms": [], "srm": 5, "advisor": "x",
                                 "policy": 1, "window": {"opens_at": "soon"}}},
        {**ADVANCE, "evidence": {"guardrails": {"e": {"delta": "x", "regressed": "yes"}},
                                 "arms": {"control": {"units": -1.5, "errors": True}}}},
    ],
)  # fmt: skip
def test_odd_evidence_costs_a_blank_never_the_report(junk: dict[str, Any]) -> None:
    report = from_served(STATUS, [START, junk, ROLLBACK], None, NOW)
    assert markdown(report)
    assert html_page(report)
    assert [d.action for d in report.decisions] == ["start", junk["action"], "rollback"]
    assert not any("contract" in note for note in report.notes)


@pytest.mark.parametrize(
    "junk",
    [
        {"type": "decision", "flag": "checkout", "rollout_id": "r1"},
        {**ADVANCE, "stage": "two", "evidence": "x"},
        {**ADVANCE, "ts": 10**30},
        {**ADVANCE, "unknown": 1},
        "not an object",
        b"\xff not JSON",
    ],
)
def test_a_message_breaking_the_decision_contract_is_left_out_and_counted(junk: object) -> None:
    report = from_served(STATUS, [START, junk, ROLLBACK], None, NOW)
    assert [d.action for d in report.decisions] == ["start", "rollback"]
    assert "1 message(s) on the decisions topic broke the decision contract" in markdown(report)


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
    page = html_page(from_served({**STATUS, "plan": HOSTILE}, [START, ADVANCE, hostile], None, NOW))
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
    text = markdown(from_served({**STATUS, "plan": HOSTILE}, [START, ADVANCE, ROLLBACK], None, NOW))
    assert "<script>" not in text
    assert "[x](" not in text
    assert "\\[x\\](http://evil)" in text
    assert "\\<script\\>alert(1)\\</script\\>" in text
    table_rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert {line.count(" | ") for line in table_rows[:1]} == {len(STAGE_HEAD) - 1}


def test_html_draws_each_guardrail_as_the_console_does_with_words_and_numbers() -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], HISTORY, NOW)
    page = html_page(report)
    error_rate, _ = report.charts
    assert error_rate.svg() in page  # the console's chart, as it is
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 2
    assert '<circle class="crossing" cx="' in page
    assert html.escape(error_rate.text(), quote=True) in page
    assert error_rate.table(limit=200) in page
    assert "latency_p99: no data yet." in page
    assert not [value for name, value in _attrs(page) if name in ("src", "href")]
    text = markdown(report)
    assert "## Guardrails over time" in text
    assert "crossed the tolerance at 10:01:40 in stage 2/5 (5%)" in text
    assert "- latency_p99: no data yet." in text


def test_a_hostile_metric_name_in_the_history_is_text_in_the_chart() -> None:
    point = {**gate("10:00:05", 0, 0.1), "guardrails": {HOSTILE: {"delta": 1, "lower": 0.5,
             "upper": 2, "tolerance": 0.0, "direction": "lower_is_better", "p_value": 0.01,
             "regressed": True}}}  # fmt: skip
    page = html_page(from_served(STATUS, [START], served([point]), NOW))
    parsed = Collector()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert HOSTILE in "".join(parsed.text)
    assert not [value for name, value in parsed.attrs if name in ("src", "href")]
    named = {name for name, value in parsed.attrs if "http://evil" in (value or "")}
    assert named == {"data-metric", "aria-label"}  # escaped, as the name of what it labels


def _attrs(page: str) -> list[tuple[str, str | None]]:
    parsed = Collector()
    parsed.feed(page)
    return parsed.attrs


def test_a_promoted_stage_has_no_gate_numbers_and_a_watch_is_a_stage_of_its_own() -> None:
    promote = decision(
        "10:00:10", "promote", 1, 0, kind="command", evidence={"actor": "ana", "key_id": "k"}
    )
    to_last = decision("10:00:20", "promote", 4, 1, kind="command", reason="to the end")
    watch = decision("10:00:30", "watch", 4, 4, evidence=evidence(500, 5))
    done = decision("10:30:30", "complete", 4, 4, phase_after="completed")
    status = {**STATUS, "phase": "completed", "stage": 4, "percent": 100.0}
    report = from_served(status, [START, promote, to_last, watch, done], None, NOW)
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


def test_an_advisor_contradicting_itself_is_reported_as_incoherent_not_quoted() -> None:
    said = {"status": "ok", "action": "advance", "confidence": 0.9, "latency_ms": 10,
            "rationale": "Errors regressed badly: roll back."}  # fmt: skip
    advised = {**ADVANCE, "evidence": {**ADVANCE["evidence"], "advisor": said}}
    text = markdown(from_served(STATUS, [START, advised, ROLLBACK], None, NOW))
    assert "advisor says advance (confidence 0.9, 0.0 s); incoherent, rationale not quoted:" in text
    assert "its rationale argues for caution while it says advance" in text
    assert "regressed badly" not in text


def test_the_report_writes_numbers_in_the_one_convention() -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], HISTORY, NOW)
    text = markdown(report)
    # Δ 0.0204 over control's 8/400 = 2%: +2.0 pp, +102% relative, the interval in pp.
    row = "| error_rate | regressed (interval wholly above tolerance) | +2.0 pp \\[+1.7, +2.4\\]"
    assert f"{row} (+102%) | 0 pp |" in text
    assert "latest error rate +2.0 pp [+1.7, +2.4]" in report.charts[0].text()
    assert "0.0204" not in text
    page = html_page(report)
    assert "+2.0 pp [+1.7, +2.4] (+102%)" in page
    assert '<td class="regressed">regressed (interval wholly above tolerance)</td>' in page
    assert "<td>+2.0 pp [+1.7, +2.4]</td>" in page  # the chart's own table
    # each arm's own value beside Δ, for the rate only (the history keeps no per-arm latency)
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="arms-chart"') == 1
    assert "- error rate per arm, so far in each stage: latest treatment 100%" in text


def test_the_report_opens_with_its_verdict() -> None:
    reason = "error rate +2.0 pp [+1.7, +2.4] (+102%), regressed (p = 6.5e-69)"
    rolled = {**ROLLBACK, "reason": reason}
    report = from_served(STATUS, [START, ADVANCE, rolled], HISTORY, NOW)
    assert report.verdict == f"Rolled back at stage 2/5 (5%): {reason}"
    text = markdown(report)
    first = text.splitlines()[2]
    assert first.startswith("**Rolled back at stage 2/5 (5%): error rate +2.0 pp \\[+1.7, +2.4\\]")
    page = html_page(report)
    assert page.index('<p class="verdict">Rolled back at stage 2/5 (5%): error rate') < page.index(
        "<dl>"
    )


WAIT_REASON = "ready, waiting for the window that opens Mon 09:00 Europe/Berlin"
WAITED = decision(
    "10:00:40", "wait", 1, 1, phase_after="running", reason=WAIT_REASON,
    evidence={"window": {"opens_at": "2026-11-23T08:00:00+00:00"}},
)  # fmt: skip
NO_TRAFFIC = {"trigger": "no_traffic", "action": "warn", "policy_entry": "health_policy.no_traffic"}
WARNED = decision(
    "10:00:50", "warn", 1, 1, outcome="recorded", reason="no events in the stage for 1:00:00",
    evidence={"policy": NO_TRAFFIC},
)  # fmt: skip
HELD = decision(
    "10:01:20", "pause", 1, 1, phase_after="paused", reason="sample ratio mismatch",
    evidence={"policy": {"trigger": "sample_ratio_mismatch", "action": "hold",
                         "policy_entry": "default"}},
)  # fmt: skip


def test_the_report_lists_the_windows_waited_and_the_triggers_fired() -> None:
    later = {**WAITED, "ts": "2026-11-22T10:02:00Z"}
    status = {**STATUS, "phase": "paused"}
    report = from_served(status, [START, ADVANCE, WAITED, WARNED, HELD, later], None, NOW)
    first, second = report.waits
    assert (first.stage, first.since, first.until) == (
        "stage 2/5 (5%)",
        "2026-11-22T10:00:40+00:00",
        "2026-11-22T10:01:20+00:00",
    )  # the warning left it waiting; the hold ended the wait
    assert (first.reason, first.opens_at) == (WAIT_REASON, "2026-11-23T08:00:00+00:00")
    assert second.until is None
    assert [(t.trigger, t.action, t.entry, t.outcome) for t in report.triggers] == [
        ("no_traffic", "warn", "health_policy.no_traffic", "recorded"),
        ("sample_ratio_mismatch", "hold", "default", "applied"),
    ]
    text = markdown(report)
    assert "## Windows waited" in text
    assert "| stage 2/5 (5%) | 2026-11-22 10:00:40 UTC | 2026-11-22 10:01:20 UTC |" in text
    assert "still waiting" in text
    assert "## Triggers fired" in text
    assert "| no_traffic | warn | health_policy.no_traffic | recorded |" in text
    page = html_page(report)
    assert "<h2>Windows waited</h2>" in page
    assert "<h2>Triggers fired</h2>" in page


def test_a_report_with_no_waits_or_triggers_has_no_such_sections() -> None:
    report = from_served(STATUS, [START, ADVANCE, ROLLBACK], None, NOW)
    assert (report.waits, report.triggers) == ([], [])
    assert "Windows waited" not in markdown(report) + html_page(report)
    assert "Triggers fired" not in markdown(report) + html_page(report)


def test_each_stage_shows_each_arms_latency_beside_its_counts() -> None:
    latency = {
        "treatment": {"p50": 21.04, "p95": 48.239, "p99": 1204.5, "count": 90},
        "control": {"p50": None, "p95": None, "p99": None, "count": 0},
    }
    timed = {**ROLLBACK, "evidence": {**ROLLBACK["evidence"], "latency": latency}}
    report = from_served(STATUS, [START, ADVANCE, timed], None, NOW)
    first, second = report.stages
    treatment, control = second.arms
    assert (treatment.latency_p50_ms, treatment.latency_p95_ms) == (21.04, 48.239)
    assert (control.latency_p50_ms, control.latency_p99_ms) == (None, None)
    assert first.arms[0].latency_p95_ms is None  # a gate that published none
    text = markdown(report)
    assert "| latency p50 (ms) | p95 (ms) | p99 (ms) |" in text
    assert "| treatment | 55 | 110 | 100 | 9 | 0 | 21.0 | 48.2 | 1,204 |" in text
    assert "| control | 900 | 1,800 | 400 | 8 | 0 | - | - | - |" in text
    page = html_page(report)
    assert '<th scope="col">p95 (ms)</th>' in page
    assert '<td class="n">48.2</td>' in page


@pytest.mark.parametrize(
    ("tested", "note"),
    [
        (
            {"unit_of_analysis": "unit", "design_effect": 5.29, "widening": 2.3},
            "error_rate: units that send many requests or fail together make the interval"
            " 2.3 times as wide: the stage needs about 5.3 times as many units to see the"
            " same difference",
        ),
        ({"unit_of_analysis": "unit", "design_effect": 1.0, "widening": 1.0}, None),
        ({"unit_of_analysis": "unit", "widening": None}, None),
        (
            {"unit_of_analysis": "request"},
            "error_rate: assumes independent requests: its interval is not widened for units"
            " that send many requests or fail together",
        ),
        (
            {
                "unit_of_analysis": "unit",
                "widening": 1.0,
                "dominant": {
                    "bucket": 7,
                    "arm": "treatment",
                    "events_share": 0.93,
                    "variance_share": 0.97,
                },
            },
            "error_rate: one bucket of units in treatment sent 93% of its events and carries"
            " 97% of its variance: most likely one unit (a bot, a broken account) decides this"
            " metric",
        ),
    ],
)
def test_each_stage_says_why_a_guardrails_interval_is_as_wide_as_it_is(
    tested: dict[str, Any], note: str | None
) -> None:
    gated = evidence(55, 9, regressed=True)
    gated["guardrails"]["error_rate"] |= tested
    ended = {**ROLLBACK, "evidence": {**ROLLBACK["evidence"], **gated}}
    report = from_served(STATUS, [START, ADVANCE, ended], None, NOW)
    error_rate = report.stages[1].guardrails[0]
    assert error_rate.widening == ("" if note is None else note.removeprefix("error_rate: "))
    text = markdown(report).split("### stage 2/5")[1]
    page = html_page(report).split("<h3>stage 2/5")[1].split("</section>")[0]
    if note is None:  # the first stage's guardrail (no unit_of_analysis) is on requests
        assert "error_rate:" not in text + page
    else:
        assert f"- {note}" in text
        assert f'<p class="widening">{html.escape(note)}</p>' in page


@pytest.mark.parametrize(
    ("counts", "said"),
    [
        ((0, 0, 0.0), "(no units yet)"),
        ((90, 110, 100.0), "(ok)"),
        ((0, 1260, 1260.0), "(not checked: one arm)"),  # a ring at 100% that matched nobody
    ],
)
def test_a_reports_sample_ratio_reads_no_units_yet_on_0_against_0(
    counts: tuple[int, int, float], said: str
) -> None:
    srm = SampleRatio(float(counts[0]), float(counts[1]), counts[2], 1.0, flagged=False)
    assert srm_text(srm).endswith(said)
