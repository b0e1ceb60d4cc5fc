"""The console's rendering: charts, pages and the data behind them, on in-memory stores."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

import orjson
import pytest

from controller.adapters.http.web_console import is_loopback, session_value
from controller.adapters.memory import MemoryGateHistory, MemoryStates
from controller.console import pages
from controller.console.charts import (
    MAX_POINTS,
    ChartPoint,
    Mark,
    chart_points,
    chart_table,
    crossing,
    guardrail_chart,
)
from controller.console.charts import describe as describe_chart
from controller.console.figures import GuardrailSpec
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.machine.gate import evaluate
from controller.core.machine.transitions import Cause, roll_back
from controller.core.reading import history
from controller.core.reading.served_history import (
    MAX_SERVED_POINTS,
    MAX_SERVED_STAGES,
    HistoryPoint,
    RolloutHistory,
)
from controller.core.reading.views import RolloutRow, RolloutStatus, describe
from controller.core.rollouts.actions import RaiseAlert, RecordDecision
from controller.core.rollouts.completeness import Completeness
from controller.core.rollouts.moving import NextMove
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.policy import PauseReason
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.rules.text import parse
from controller.core.wire import JsonObject
from controller.core.wire.messages import Alert, Decision, decision_or_alert
from controller.ctl.looking import views
from controller.daemon.serving.console import ConsoleData
from controller.ports import StateWrite
from tests.unit.core.machine.gate.test_gate import EARLY, HEALTHY, T0, arm, data, plan, rollout

HOSTILE = '<script>alert("x")</script>&'


def rising(n: int = 10, tolerance: float = 0.0) -> list[ChartPoint]:
    """Δ climbing from 0 while the bound narrows: the lower bound crosses at i = 6."""
    return [
        ChartPoint(1000 * i, i // 4, 0.01 * i, 0.01 * i - 0.05, 0.01 * i + 0.05) for i in range(n)
    ]


def test_crossing_is_the_first_point_whose_bound_clears_the_tolerance() -> None:
    assert crossing(rising(), 0.0, lower_is_better=True) == 6
    assert crossing(rising(), 0.2, lower_is_better=True) == -1
    falling = [ChartPoint(p.ts_ms, 0, -p.delta, -p.upper, -p.lower) for p in rising()]
    assert crossing(falling, 0.0, lower_is_better=False) == 6


def test_chart_draws_the_crossing_above_the_tolerance_with_marks_and_a_description() -> None:
    svg = guardrail_chart(
        rising(),
        0.0,
        metric="error_rate",
        stages=[Mark(4000, "stage 2")],
        decisions=[Mark(6000, "rollback")],
    )
    circle = re.search(
        r'<circle class="crossing" cx="[\d.]+" cy="([\d.]+)"[^>]*data-ts="(\d+)"', svg
    )
    tolerance = re.search(r'<line class="tolerance"[^>]* y1="([\d.]+)"', svg)
    assert circle is not None
    assert tolerance is not None
    assert circle.group(2) == "6000"
    assert float(circle.group(1)) < float(tolerance.group(1))
    assert 'class="decision"' in svg
    assert "stage 2" in svg
    assert "crossed the tolerance at 00:00:06 in stage 2" in svg
    assert 'role="img"' in svg


def test_the_description_and_table_keep_a_bound_on_its_side_of_the_tolerance() -> None:
    # The lower bound +0.39 pp above a tolerance of 0: never "[0, +13]".
    crossed = [ChartPoint(0, 0, 0.07, 0.0039, 0.129)]
    said = describe_chart(crossed, 0.0, metric="error_rate", lower_is_better=True)
    assert "latest error rate +7.0 pp [+0.4, +12.9]; harm is" in said
    assert "wholly above the tolerance 0." in said
    near = [ChartPoint(0, 0, -0.03, -0.05, -0.0201)]
    said = describe_chart(near, 0.02, metric="conversion_rate", lower_is_better=False)
    assert "[-5.00, -2.01]; harm is the interval wholly below the tolerance -2.00 pp." in said
    table = chart_table(crossed, metric="error_rate", edge=0.0)
    assert "<td>+7.0 pp [+0.4, +12.9]</td>" in table


def test_chart_clips_infinite_bounds_and_handles_no_data() -> None:
    points = [ChartPoint(0, 0, 0.0, -math.inf, math.inf), *rising()[1:]]
    svg = guardrail_chart(points, 0.0, metric="error_rate")
    band = re.search(r'<polygon class="bound" points="([^"]+)"', svg)
    assert band is not None
    ys = [float(xy.split(",")[1]) for xy in band.group(1).split()]
    assert all(0 <= y <= 300 for y in ys)  # clipped to the plot
    assert "no data yet" in guardrail_chart([], 0.0, metric="error_rate")


def test_chart_escapes_its_metric_and_labels() -> None:
    svg = guardrail_chart(rising(), 0.0, metric=HOSTILE, stages=[Mark(1000, HOSTILE)])
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg


def served(**over: object) -> dict[str, object]:
    """A rollout's status as ``/rollouts/{flag}`` serves it."""
    return describe(rollout(), None, EARLY).served() | over


def status_of(**over: object) -> RolloutStatus:
    return RolloutStatus.model_validate(served(**over))


def row_of(health: str, **over: object) -> RolloutRow:
    fields = served(**over) | {"active": True, "health": health, "health_reason": ""}
    return RolloutRow.model_validate(fields)


EMPTY = RolloutHistory(flag="f", rollout_id="r", stages=[])


def test_list_escapes_outside_text_and_says_health_in_words() -> None:
    row = row_of("failed", flag=HOSTILE, phase="rolled_back")
    row = row.model_copy(update={"health_reason": HOSTILE})
    alert = Alert.model_validate(
        {"v": 1, "id": "a", "type": "alert", "ts": "2026-11-22T12:00:00Z", "flag": "f",
         "severity": "critical", "kind": "rollback", "summary": HOSTILE}
    )  # fmt: skip
    html = pages.rollout_list([row], [alert])
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert f'<td data-label="stage">{pages.stage_text(row)}</td>' in html
    assert "failed" in html
    assert "/ui/rollouts/%3Cscript%3E" in html


def point_with(p_value: float = 0.5, srm_p: float = 1.0, delta: float = 0.1) -> HistoryPoint:
    test = {"delta": delta, "lower": 0.0, "upper": 0.2, "p_value": p_value, "tolerance": 0.0,
            "direction": "lower_is_better", "regressed": False}  # fmt: skip
    return HistoryPoint.model_validate(
        {"ts_ms": 0, "ts": "", "stage": 0, "percent": 1.0, "verdict": "hold", "srm_p": srm_p,
         "arms": {}, "guardrails": {"error_rate": test, "latency_p99": None}}
    )  # fmt: skip


def point_of(
    guardrails: dict[str, object], limits: dict[str, object] | None = None
) -> HistoryPoint:
    return HistoryPoint.model_validate(
        {"ts_ms": 0, "ts": "", "stage": 0, "percent": 1.0, "verdict": "hold", "srm_p": 1.0,
         "arms": {}, "guardrails": guardrails, "limits": limits}
    )  # fmt: skip


def limit_point(
    rate: float, lower: float, upper: float, *, regressed: bool = False
) -> HistoryPoint:
    """A gate point of a stage without control: its error-rate limit at 5%, beside a late
    unit's guardrail test past its tolerance that compares nothing."""
    limit = {"rate": rate, "lower": lower, "upper": upper, "ceiling": 0.05, "limit": 0.05,
             "regressed": regressed}  # fmt: skip
    return point_of(point_with().model_dump()["guardrails"], {"error_rate": limit})


HOLDS = {"delta": -0.01, "lower": -0.02, "upper": 0.0, "p_value": 0.9, "tolerance": 0.0,
         "direction": "lower_is_better", "regressed": False}  # fmt: skip


@pytest.mark.parametrize(
    ("case", "last", "health"),
    [
        ("no point yet", None, ("healthy", "")),
        ("every guardrail holds", point_of({"error_rate": HOLDS}), ("healthy", "")),
        # harm not excluded, or not yet tested: never "healthy"
        ("within, harm not excluded", point_with(delta=-0.01),
         ("undecided", "error rate undecided (within tolerance so far, harm above not excluded)")),
        ("a limit not shown either way", limit_point(0.014, 0.0, 0.072),
         ("undecided", "error_rate: 1.4% [0, 7.2%] against its limit 5.0%, not shown above,"
          " nor yet under")),
        ("a limit shown under", limit_point(0.01, 0.0, 0.03), ("healthy", "")),
        ("a limit above, not yet shown above", limit_point(0.07, 0.03, 0.11),
         ("watching", "error_rate: 7% [3%, 11%] against its limit 5.0%, above it, not yet"
          " shown above")),
        ("a limit breached", limit_point(0.09, 0.06, 0.12, regressed=True),
         ("attention", "error_rate: 9% [6%, 12%] against its limit 5.0%, breached")),
    ],
)  # fmt: skip
def test_a_running_rollout_is_healthy_only_when_every_test_holds(
    case: str, last: HistoryPoint | None, health: tuple[str, str]
) -> None:
    assert pages.health(status_of(phase="running"), last) == health, case


def test_a_rolled_back_row_says_the_guardrail_and_interval_that_ended_it() -> None:
    why = "error rate +5.0 pp [+2.1, +7.9] (control 1.0%), regressed (p = 0.0001)"
    ended = status_of(phase="rolled_back", verdict=None, verdict_reason=why)
    assert pages.health(ended, None) == ("failed", f"rolled back: {why}")
    row = row_of("failed", phase="rolled_back").model_copy(
        update={"health_reason": pages.health(ended, None)[1]}
    )
    assert f"<small>rolled back: {why}</small>" in pages.rollout_list([row], [])


def test_health_from_phase_and_last_point() -> None:
    last = point_with(p_value=0.01)
    running = status_of(phase="running")
    # past its tolerance, not significant: never "healthy"
    watched = ("watching", "error rate watching (above tolerance, not yet significant)")
    assert pages.health(running, point_with()) == watched
    said = "error rate watching (above tolerance, not yet significant), p = 0.01"
    assert pages.health(running, last) == ("attention", said)
    assert pages.health(running, point_with(srm_p=0.001))[0] == "attention"
    assert pages.health(status_of(phase="paused", pause_reason="srm"), None)[0] == "attention"
    assert pages.health(status_of(phase="killed"), last)[0] == "failed"
    assert pages.health(status_of(phase="rolled_back"), last)[0] == "failed"
    assert pages.health(status_of(phase="aborted"), last) == ("ended", "aborted")  # neutral
    assert pages.health(status_of(phase="completed"), last)[0] == "done"


WATCHED = {
    "delta": 0.07, "variance": 2e-3, "n": 900, "half_width": 0.09, "lower": -0.02,
    "upper": 0.16, "regressed": False, "direction": "lower_is_better", "tolerance": 0.0,
    "alpha": 0.01, "n_tune": 1000, "p_value": 0.3,
}  # fmt: skip


def test_the_list_the_page_and_status_say_a_guardrails_state_in_the_same_words() -> None:
    # +7 pp past a tolerance of 0, not yet significant: watched everywhere, "ok" nowhere
    evidence = {"guardrails": {"error_rate": WATCHED, "latency_p95": "insufficient data"}}
    status = status_of(
        phase="running", verdict="hold", verdict_reason="minimum stage time not reached",
        evidence=evidence,
    )  # fmt: skip
    specs = [GuardrailSpec("error_rate"), GuardrailSpec("latency_p95", 5.0)]
    page = rollout_detail(RolloutPage(status, EMPTY, guardrails=specs))
    watched = "error rate watching (above tolerance, not yet significant)"
    assert f'<p class="guardrail-state" data-state="watching">{watched}</p>' in page
    untested = "p95 latency not yet tested (too few events)"
    assert f'<p class="guardrail-state" data-state="untested">{untested}</p>' in page
    opening = re.search(r'<p class="verdict">([^<]+)</p>', page)
    assert opening is not None
    assert opening.group(1).endswith(f"minimum stage time not reached; {watched}")
    point = {"ts_ms": 0, "ts": "", "stage": 0, "percent": 1.0, "verdict": "hold", "srm_p": 1.0,
             "arms": {}, "guardrails": {"error_rate": WATCHED, "latency_p95": None}}  # fmt: skip
    assert pages.health(status, HistoryPoint.model_validate(point)) == ("watching", watched)
    detail = views.status_detail(status)
    assert "tolerance 0 pp, watching (above tolerance, not yet significant)" in detail
    assert "guardrail latency_p95: not yet tested (too few events)" in detail


def test_session_cookie_is_not_the_token_and_loopback_is_recognised() -> None:
    assert session_value("t") != "t"
    assert session_value("t") != session_value("u")
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "example.com"))


async def console_over(*phases: Phase) -> tuple[ConsoleData, MemoryGateHistory]:
    states, store = MemoryStates(), MemoryGateHistory()
    for i, phase in enumerate(phases):
        r = rollout().model_copy(update={"flag": f"f{i}", "rollout_id": f"r{i}", "phase": phase})
        await states.save(r.flag, StateWrite(rev=0, rollout=r))
        verdict = evaluate(r, data(arm(units=1_111, errors=650), arm()), EARLY)
        await store.append_point(
            r.flag, r.rollout_id, 0, history.encode(history.point_of(r, verdict, EARLY))
        )
        decision: dict[str, object] = {
            "type": "decision",
            "rollout_id": r.rollout_id,
            "ts": "2026-11-22T12:00:00Z",
        }
        decision |= {"v": 1, "id": f"d{i}", "flag": r.flag}
        decision |= {"action": "pause", "outcome": "applied", "kind": "command", "reason": HOSTILE}
        await store.append_message(r.flag, orjson.dumps(decision), alert=False)

    async def status(flag: str | None) -> list[RolloutStatus]:
        found = (await states.load(flag or "")).rollout
        if found is None:
            return []
        shown = describe(found, evaluate(found, HEALTHY, EARLY), EARLY)
        return [RolloutStatus.model_validate({**shown.served(), "stale": False})]

    console = ConsoleData(states=states, history=store, status=status, clock=lambda: EARLY)
    return console, store


async def test_rows_read_the_last_point_of_active_rollouts_only() -> None:
    console, _ = await console_over(Phase.RUNNING, Phase.ROLLED_BACK)
    rows = {r.flag: r for r in await console.rows()}
    assert rows["f0"].health == "attention"  # its last gate saw the error rate regress
    assert rows["f1"].health == "failed"


async def test_history_is_served_stage_by_stage() -> None:
    console, _ = await console_over(Phase.RUNNING)
    served = await console.history("f0")
    assert served is not None
    assert [s.stage for s in served.stages] == [0, 1]
    (point,) = served.stages[0].points
    assert point.verdict == "rollback"
    regressed = point.guardrails["error_rate"]
    assert regressed is not None
    assert regressed.regressed is True
    assert await console.history("nobody") is None


async def test_rollout_page_has_chart_decisions_and_commands_escaped() -> None:
    console, _ = await console_over(Phase.RUNNING)
    html = await console.rollout_fragment("f0")
    assert html is not None
    assert 'svg xmlns="http://www.w3.org/2000/svg" class="chart"' in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "rolloutctl kill f0" in html
    assert "rolloutctl pause f0" in html
    # A running rollout awaits no approval, and is running already: neither is offered.
    assert "rolloutctl approve f0" not in html
    assert "rolloutctl resume f0" not in html
    assert await console.rollout_fragment("nobody") is None


@pytest.mark.parametrize("flag", ["a b", "x;rm -rf /"])
def test_commands_quote_the_flag_for_the_shell(flag: str) -> None:
    found = rollout().model_copy(update={"flag": flag})
    status = describe(found, None, T0 + timedelta(1))
    html = rollout_detail(RolloutPage(status, EMPTY))
    assert f"rolloutctl pause &#x27;{pages.esc(flag)}&#x27;" in html


def test_the_page_shows_the_values_a_plan_declares_escaped() -> None:
    values = {"type": "string", "control": "<b>old</b>", "treatment": "new"}
    html = rollout_detail(RolloutPage(status_of(values=values), EMPTY))
    shown = 'treatment "new", control "<b>old</b>" (string)'
    assert f"<dt>values</dt><dd>{pages.esc(shown)}</dd>" in html
    assert "<dt>values</dt>" not in rollout_detail(RolloutPage(status_of(), EMPTY))


@pytest.mark.parametrize(
    ("evidence", "shown"),
    [
        ({}, None),
        ({"audience": {"stage": 'segment("staff")', "percent": 100}},
         "segment(&quot;staff&quot;) 100%, compared against a concurrent control"),
        ({"audience": {"rollout": 'country == "TH"', "stage": "everyone", "percent": 5},
          "comparison": "none (no concurrent control)", "limits": {}},
         "everyone 5% within country == &quot;TH&quot;, compared against absolute limits"),
        ({"audience": {"stage": HOSTILE, "percent": 5}},
         f"{pages.esc(HOSTILE)} 5%, compared against a concurrent control"),
    ],
)  # fmt: skip
def test_the_evidence_names_the_current_ring(
    evidence: dict[str, object], shown: str | None
) -> None:
    html = rollout_detail(RolloutPage(status_of(evidence=evidence), EMPTY))
    if shown is None:
        assert 'class="audience"' not in html
    else:
        assert f'<p class="audience"><b>Audience</b>: {shown}</p>' in html
        assert "<script>" not in html


@pytest.mark.parametrize(
    ("latency", "treatment", "control"),
    [
        (
            {"treatment": {"p50": 21.04, "p95": 48.239, "p99": 1204.5, "count": 90},
             "control": {"p50": None, "p95": None, "p99": None, "count": 0}},
            ["21.0", "48.2", "1,204"],
            ["-", "-", "-"],
        ),
        (None, ["-", "-", "-"], ["-", "-", "-"]),  # an older gate published none
        ({"treatment": {"p95": "<b>"}, "control": 7}, ["-", "-", "-"], ["-", "-", "-"]),
    ],
)  # fmt: skip
def test_the_arms_table_shows_each_arms_latency(
    latency: object, treatment: list[str], control: list[str]
) -> None:
    arms = {"treatment": {"units": 90, "requests": 100}, "control": {"units": 900}}
    evidence = {"arms": arms, "srm": {"flagged": False}} | ({"latency": latency} if latency else {})
    html = rollout_detail(RolloutPage(status_of(evidence=evidence), EMPTY))
    head = '<th scope="col">latency p50 (ms)</th><th scope="col">p95 (ms)</th>'
    assert head + '<th scope="col">p99 (ms)</th></tr>' in html
    for name, counts, latencies in (
        ("treatment", ["90", "0", "100", "0", "0"], treatment),
        ("control", ["900", "0", "0", "0", "0"], control),
    ):
        cells = "".join(f"<td>{cell}</td>" for cell in counts + latencies)
        assert f'<tr><th scope="row">{name}</th>{cells}</tr>' in html
    assert "<b>" not in html.split('class="arms"')[1]


@pytest.mark.parametrize(
    ("audience", "rings", "shown"),
    [
        (None, [None, None], []),
        (
            None,
            ['user_id in segment("staff")', None],
            ["user_id in segment(&quot;staff&quot;)", "everyone"],
        ),
        ('country == "TH"', [None, None], ["everyone", "everyone"]),
    ],
)
async def test_the_stages_name_their_rings(
    audience: str | None, rings: list[str | None], shown: list[str]
) -> None:
    ladder = [
        stage.model_copy(update={"audience": None if ring is None else parse(ring)})
        for stage, ring in zip(plan().stages, rings, strict=True)
    ]
    targeted = plan().model_copy(
        update={"audience": None if audience is None else parse(audience), "stages": ladder}
    )
    states = MemoryStates()
    await states.save("f", StateWrite(rev=0, rollout=rollout(targeted)))

    async def status(flag: str | None) -> list[RolloutStatus]:
        return []

    console = ConsoleData(
        states=states, history=MemoryGateHistory(), status=status, clock=lambda: EARLY
    )
    html = await console.rollout_fragment("f")
    assert html is not None
    assert re.findall(r'<small class="ring">(.*?)</small>', html) == shown
    within = f'<p class="within">Within {pages.esc(audience)}</p>'
    assert (within in html) is (audience is not None)


def at_stage(index: int, of: int, percent: float) -> dict[str, object]:
    return {"index": index, "of": of, "percent": percent}


def position(index: int, of: int, percent: float) -> dict[str, object]:
    label = f"stage {index + 1}/{of} ({percent:g}%)"
    return at_stage(index, of, percent) | {"number": index + 1, "label": label}


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"stage": 2, "stages": 5, "at_stage": position(2, 5, 25.0)}, "stage 3/5 (25%)"),
        ({"stage": 0, "stages": 3, "at_stage": position(0, 3, 0.5)}, "stage 1/3 (0.5%)"),
        ({"stage": 2, "stages": 5, "at_stage": None}, "stage 3/5"),
        ({"stage": 2, "stages": 0, "at_stage": None}, "stage 3"),
        ({"stage": 99_999, "stages": 5, "at_stage": None}, "-"),
    ],
)  # fmt: skip
def test_the_list_names_a_stage_as_rolloutctl_status_does(
    row: dict[str, object], expected: str
) -> None:
    listed = row_of("healthy", **row)
    assert pages.stage_text(listed) == expected
    assert f'<td data-label="stage">{pages.esc(expected)}</td>' in pages.rollout_list([listed], [])


PERCENTS = (1.0, 5.0, 25.0, 50.0, 100.0)
LABELS = [
    "stage 1/5 (1%)",
    "stage 2/5 (5%)",
    "stage 3/5 (25%)",
    "stage 4/5 (50%)",
    "stage 5/5 (100%)",
]


def test_every_view_of_a_rolled_back_rollout_names_its_stage_as_the_alert_does() -> None:
    # Given a five-stage rollout rolled back by its gate at 25%, with a history of three stages
    ladder = plan(stages=[Stage(percent=p, min_duration=timedelta(0)) for p in PERCENTS])
    at = [
        rollout(ladder).model_copy(update={"stage": i, "stage_started_at": T0 + timedelta(i)})
        for i in range(3)
    ]
    failing = data(arm(units=1_111, errors=650), arm())
    verdict = evaluate(at[2], failing, T0 + timedelta(days=2, minutes=5))
    after, actions = roll_back(at[2], T0 + timedelta(days=2, minutes=5), Cause.gate(verdict))
    assert after is not None
    (alert,) = [a for a in actions if isinstance(a, RaiseAlert)]
    (recorded,) = [a for a in actions if isinstance(a, RecordDecision)]
    position = alert.details["at_stage"]
    assert isinstance(position, dict)
    label = position["label"]
    assert label == LABELS[2]
    assert f"rolled back at {label}:" in alert.summary
    points = [[point_at(at[i], failing if i == 2 else HEALTHY, i)] for i in range(3)]
    gates = RolloutHistory.read(
        {
            "flag": "f",
            "rollout_id": "r",
            "stages": [
                {"stage": i, "percent": p, "points": points[i] if i < 3 else []}
                for i, p in enumerate(PERCENTS)
            ],
        }
    )
    assert gates is not None
    decision = {
        "type": "decision", "rollout_id": "r", "ts": "2026-11-24T12:05:00+00:00",
        "v": 1, "id": "d1", "flag": "f",
        "kind": recorded.kind, "action": recorded.action, "outcome": recorded.outcome,
        "reason": recorded.reason, "stage": recorded.stage, "evidence": recorded.evidence,
    }  # fmt: skip
    shown = describe(after, None, T0 + timedelta(days=3))
    status = shown.served()
    published = decision_or_alert(decision)
    assert isinstance(published, Decision)

    # When the console shows it: the list, and its page
    row = status | {"active": False, "health": "failed", "health_reason": ""}
    listed = pages.rollout_list([RolloutRow.model_validate(row)], [])
    page = rollout_detail(
        RolloutPage(shown, gates, [published], PERCENTS, [GuardrailSpec("error_rate", 0.0, True)])
    )

    # Then the list, the page's summary, timeline, decisions and chart say what the alert,
    # rolloutctl status and decision lines say
    assert f'<td data-label="stage">{label}</td>' in listed
    assert f'<dd class="stage">{label}</dd>' in page
    assert f'<li class="failed"><b>{label}</b>' in page
    assert re.findall(r"<li[^>]*><b>([^<]+)</b>", page) == LABELS
    assert f"</time> at {label} <b>rollback</b>" in page
    marks = re.findall(r'<text class="stage-label"[^>]*>([^<]+)</text>', page)
    assert marks == LABELS[1:3]
    assert f"in {label}." in page  # the chart's description of the crossing
    assert f"stage:       {label}, serving 0%" in views.status_detail(
        RolloutStatus.model_validate(status)
    )
    assert f"at {label}" in views.decision_line(published)
    # And the page opens with the verdict, the reason in pp with its interval, before any
    # evidence; the stage chips' times are start times
    opening = re.search(r'<p class="verdict">([^<]+)</p>', page)
    assert opening is not None
    assert page.index('class="verdict"') < page.index('class="summary"')
    assert re.fullmatch(
        rf"Rolled back at {re.escape(label)}: error rate \+[\d.]+ pp \[\+[\d.]+, \+[\d.]+\]"
        r"(?: \(\+[\d,.]+%\))?, regressed \(p = [^)]+\)",
        opening.group(1),
    ), opening.group(1)
    assert (
        f'<li class="passed"><b>{LABELS[0]}</b> <small>passed</small> <small>· started</small>'
        in page
    )
    # And a rolled-back flag is offered no command: none applies any more
    assert '<pre class="commands">' not in page
    assert "no command applies" in page
    # Beside the Δ chart, each arm's own error rate over time
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="arms-chart"' in page
    assert "each arm's own value (treatment solid, control dashed)" in page
    assert "rolloutctl start" in page


def point_at(state: Rollout, agg: object, day: int) -> JsonObject:
    when = T0 + timedelta(days=day, minutes=5)
    verdict = evaluate(state, agg, when)  # type: ignore[arg-type]
    return history.point_of(state, verdict, when).as_json()


def test_mark_labels_start_at_their_line_and_stack_when_they_would_overlap() -> None:
    stages = [Mark(2000, "stage 2/5 (5%)"), Mark(2500, "stage 3/5 (25%)"), Mark(9000, "stage 4")]
    svg = guardrail_chart(rising(), 0.0, metric="error_rate", stages=stages)
    labels = re.findall(
        r'<text class="stage-label" x="([\d.]+)" y="([\d.]+)" text-anchor="(\w+)">([^<]+)<', svg
    )
    lines = re.findall(r'<line class="stage" x1="([\d.]+)"', svg)
    (first, second, last) = labels
    assert first[2] == second[2] == "start"  # each begins where its stage begins
    assert float(first[0]) == float(lines[0]) + 3
    assert first[1] != second[1]  # too close: the second goes on the next row
    assert last[2] == "end"  # no room to its right: it ends at its line


def test_an_opinion_is_labelled_and_a_small_models_says_it_carries_no_weight() -> None:
    advice = {"status": "ok", "action": "advance", "confidence": 0.9, "latency_ms": 5500,
              "model": "smollm2-135m", "rationale": f"error rate flat {HOSTILE}"}  # fmt: skip
    evidence = {"advisor": advice, "at_stage": at_stage(2, 5, 25.0)}
    decision = {"type": "decision", "ts": "2026-11-22T12:00:00Z", "action": "rollback",
                "stage": 2, "evidence": evidence, "v": 1, "id": "d1", "flag": "f",
                "kind": "gate", "outcome": "applied"}  # fmt: skip
    status = describe(rollout(), None, EARLY)
    page = rollout_detail(RolloutPage(status, EMPTY, [Decision.model_validate(decision)]))
    (opinion,) = re.findall(r'<ul class="advisor"><li>(.*?)</li>', page)
    assert "at stage 3/5 (25%): advisor (smollm2-135m, too small for its opinion" in opinion
    assert "says advance (confidence 0.9, 5.5 s); the gate decided <b>rollback</b>." in opinion
    quoted = pages.esc(f"error rate flat {HOSTILE}")
    assert f'Advisor\'s rationale: <q class="rationale">{quoted}</q>' in opinion
    # an opinion whose rationale contradicts its action is shown as such, never quoted
    advice.update(rationale="The error rate regressed: roll back.", coherent=False,
                  incoherence="its rationale argues for caution while it says advance")  # fmt: skip
    page = rollout_detail(RolloutPage(status, EMPTY, [Decision.model_validate(decision)]))
    (opinion,) = re.findall(r'<ul class="advisor"><li>(.*?)</li>', page)
    assert (
        "says advance (confidence 0.9, 5.5 s); incoherent, rationale not quoted: its rationale"
        " argues for caution while it says advance; the gate decided <b>rollback</b>."
    ) in opinion
    assert "regressed" not in opinion
    assert "rationale" not in opinion.split("</b>.")[1]


def test_a_served_history_is_read_within_bounds() -> None:
    test = {"delta": 0.1, "lower": "-inf", "upper": "inf", "p_value": 1.0, "tolerance": 0.0,
            "direction": "lower_is_better", "regressed": False}  # fmt: skip
    gate = {"ts": "", "percent": 1.0, "verdict": "hold", "srm_p": 1.0, "arms": {}}
    many = [
        gate | {"ts_ms": i, "stage": 0, "guardrails": {"error_rate": test}} for i in range(6_000)
    ]
    stages = [{"stage": 0, "percent": 1.0, "points": many}]
    later = [
        {"stage": i, "percent": 5.0, "points": [{**many[0], "ts_ms": 10_000 + i, "stage": i}]}
        for i in range(1, 30)
    ]
    read = RolloutHistory.read({"flag": "f", "rollout_id": "r", "stages": stages + later})
    assert read is not None
    assert len(read.stages) == MAX_SERVED_STAGES  # the stages a plan may have
    assert len(read.stages[0].points) == MAX_SERVED_POINTS  # the latest
    points = chart_points(read, "error_rate")
    assert len(points) == MAX_POINTS
    assert points[-1].ts_ms == 10_000 + MAX_SERVED_STAGES - 1
    assert points[-MAX_SERVED_STAGES].ts_ms == 5_999
    assert math.isinf(points[0].lower)  # infinities arrive as strings


@pytest.mark.parametrize(
    ("phase", "reason", "offered"),
    [
        ("running", None, ["pause", "promote", "rollback", "abort", "kill"]),
        ("paused", "operator", ["resume", "promote", "rollback", "abort", "kill"]),
        ("paused", "awaiting_approval", ["promote", "approve", "rollback", "abort", "kill"]),
        ("completed", None, ["kill"]),
        ("rolled_back", None, []),
        ("aborted", None, []),
        ("killed", None, []),
        ("junk", "junk", []),
    ],
)
def test_the_page_offers_only_the_commands_the_phase_accepts(
    phase: str, reason: str | None, offered: list[str]
) -> None:
    status = status_of(phase=phase, pause_reason=reason)
    html = rollout_detail(RolloutPage(status, EMPTY))
    shown = re.findall(r"rolloutctl (\w+) ", html)
    assert [a for a in shown if a != "start"] == offered


def test_an_aborted_rollout_is_shown_neutral() -> None:
    status = status_of(phase="aborted")
    decision = {"type": "decision", "rollout_id": status.rollout_id, "action": "abort",
                "outcome": "applied", "reason": "wrong plan", "stage": 0, "v": 1, "id": "d1",
                "flag": "f", "kind": "command", "ts": "2026-11-22T12:00:00Z"}  # fmt: skip
    html = rollout_detail(
        RolloutPage(status, EMPTY, [Decision.model_validate(decision)], [10.0, 100.0])
    )
    assert '<li class="ended"><b>stage 1/2 (10%)</b> <small>ended</small>' in html
    assert 'class="failed"' not in html
    assert '<p class="verdict">Aborted at stage 1/2 (10%): wrong plan</p>' in html
    listed = pages.rollout_list([row_of("ended", phase="aborted")], [])
    assert '<span class="health ended">ended</span>' in listed


def test_the_page_says_why_a_rollout_stands_still_and_until_when() -> None:
    paused = rollout().model_copy(
        update={"phase": Phase.PAUSED, "pause_reason": PauseReason.OPERATOR}
    )
    status = describe(paused, None, EARLY)
    html = rollout_detail(RolloutPage(status, EMPTY))
    expected = "paused by an operator; resumes only by an operator"
    assert f'<dt>next move</dt><dd class="next-move">{expected}</dd>' in html
    hostile = status.model_copy(update={"next_move": NextMove(why=HOSTILE)})
    html = rollout_detail(RolloutPage(hostile, EMPTY))
    assert f'<dd class="next-move">{pages.esc(HOSTILE)}</dd>' in html
    moving = status.model_copy(update={"next_move": None})
    assert "next move" not in rollout_detail(RolloutPage(moving, EMPTY))


def test_the_page_charts_each_arms_latency_where_the_history_kept_it() -> None:
    # Given gate points as the gate records them, each with both arms' latency quantiles
    gates = [EARLY + timedelta(minutes=m) for m in (0, 5)]
    points = [history.point_of(rollout(), evaluate(rollout(), HEALTHY, t), t) for t in gates]
    served: list[Any] = [p.as_json() for p in points]
    assert all(p["latency"]["treatment"]["p99"] is not None for p in served)
    read = RolloutHistory.read(
        {"flag": "f", "rollout_id": "r", "stages": [{"stage": 0, "percent": 5.0, "points": served}]}
    )
    assert read is not None
    specs = [GuardrailSpec("error_rate"), GuardrailSpec("latency_p99", 0.1)]
    status = describe(rollout(), None, EARLY)

    # When the console draws the rollout's page
    page = rollout_detail(RolloutPage(status, read, (), (), specs))

    # Then beside the p99 Δ chart, each arm's own p99 over time, in ms
    chart = re.search(r'<svg[^>]*class="arms-chart"[^>]*data-metric="latency_p99".*?</svg>', page)
    assert chart is not None
    assert chart.group(0).count("<polyline") == 2
    p99 = points[-1].latency["treatment"][2]
    assert p99 is not None
    assert f"p99 latency per arm, so far in each stage: latest treatment {p99:.0f} ms" in page
    assert page.count('class="arms-chart"') == 2  # the error rate's and the p99's

    # And a history recorded before the arms' latency was kept charts only the rate
    old = [{k: v for k, v in p.items() if k != "latency"} for p in served]
    before = RolloutHistory.read(
        {"flag": "f", "rollout_id": "r", "stages": [{"stage": 0, "percent": 5.0, "points": old}]}
    )
    assert before is not None
    page = rollout_detail(RolloutPage(status, before, (), (), specs))
    assert page.count('class="arms-chart"') == 1


def test_what_was_read_from_prometheus_is_shown_with_its_queries_escaped() -> None:
    query = 'sum(increase(r{f="checkout",v="on"}[60s])) < 1 and on() up{a="<script>"}'
    read = {
        "at": "2026-11-22T12:00:03+00:00",
        "queries": {"total": {"treatment": query}},
        "arms": {"treatment": {"requests": 10_000, "errors": 200}, "control": {"requests": 9}},
        "request_share": 0.0991,
    }
    sources = {
        "source": "prometheus at http://prom:9090 (setting prometheus.url)",
        "expected_share": 0.1,
        "reads": {"error_rate": read, "latency_p95": {"missing": "no reading for this stage yet"}},
    }
    html = rollout_detail(RolloutPage(status_of(evidence={"sources": sources}), EMPTY))
    shown = html.split('<pre class="sources">')[1].split("</pre>")[0]
    assert "<script>" not in shown
    assert "up{a=&quot;&lt;script&gt;&quot;}" in shown
    assert "&lt; 1 and on()" in shown
    assert "treatment: 10,000 requests, 200 errors" in shown
    assert "request share of treatment 9.91% (expected 10%" in shown
    assert "latency_p95: missing: no reading for this stage yet" in shown
    assert "Read from Prometheus" in html
    assert "Read from Prometheus" not in rollout_detail(RolloutPage(status_of(), EMPTY))


def test_the_page_says_the_stage_waits_for_held_partitions_escaped() -> None:
    held = Completeness(held={HOSTILE: frozenset({1, 2})})
    verdict = evaluate(rollout(), HEALTHY, T0 + timedelta(hours=1), None, held)
    html = rollout_detail(RolloutPage(describe(rollout(), verdict, T0), EMPTY))
    waiting = held.waiting()
    assert waiting is not None
    assert f'<dd class="evidence-wait">{pages.esc(waiting)}</dd>' in html
    assert "<script>" not in html


def test_the_page_shows_the_error_budget_as_the_gate_read_it() -> None:
    budget = {
        "holds": True,
        "reason": "error_budget: the burn rate is above 14.4 over every window (5m, 1h)",
        "above": 14.4,
        "windows": {"5m": 20.0, "1h": None},
        "problems": {"1h": "<script>no series</script>"},
    }
    html = rollout_detail(RolloutPage(status_of(evidence={"error_budget": budget}), EMPTY))
    assert (
        '<dd class="error-budget">burn rate 5m 20.0, 1h unread (holds above 14.4 over every'
        " window): forward moves wait</dd>"
    ) in html
    assert "<script>no series" not in html
    assert 'class="error-budget"' not in rollout_detail(RolloutPage(status_of(), EMPTY))


MISSING = {
    "holdout": "q4",
    "missing": True,
    "text": "no held-out units against 100 expected (do the apps report cohort holdout with"
    " their events?)",
}


@pytest.mark.parametrize(("holdout", "said"), [(MISSING, True), (None, False)])
def test_a_missing_holdout_cohort_is_said_by_the_page_and_status_alike(
    holdout: dict[str, object] | None, said: bool
) -> None:
    srm = {
        "chi2": 0.4, "p_value": 0.52, "sequential_p_value": 1.0, "flagged": False,
        "observed_treatment": 100, "observed_control": 900, "expected_treatment": 100.0,
    }  # fmt: skip
    status = status_of(evidence={"srm": srm}, holdout=holdout)
    page = rollout_detail(RolloutPage(status, EMPTY))
    detail = views.status_detail(status)
    line = f"holdout q4: {MISSING['text']}"
    assert ('<p class="srm mismatch"><b>ok; holdout cohort missing</b>' in page) is said
    assert (f'<p class="srm holdout">{line}</p>' in page) is said
    assert ("(ok; holdout cohort missing)" in detail) is said
    assert (f"  {line}" in detail.splitlines()) is said
    assert ('<p class="srm ok"><b>ok</b>' in page) is not said  # never a green "ok" alone


FAILED_EVIDENCE = {
    "failures": [
        {
            "name": "KeyError in cart.py:<script>price",
            "example": "KeyError: 'cart_id'",
            "treatment": 41,
            "control": 0,
            "treatment_rate": 0.0041,
            "control_rate": 0.0,
            "p_value": 1e-6,
            "regressed": True,
        }
    ]
}


def test_the_page_status_and_report_say_what_broke_in_the_same_words() -> None:
    status = status_of(phase="rolled_back", verdict="rollback", evidence=FAILED_EVIDENCE)
    page = rollout_detail(RolloutPage(status, EMPTY, guardrails=[]))
    assert '<h2 id="h-what-broke">What broke</h2>' in page
    assert "<code>KeyError in cart.py:&lt;script&gt;price</code>" in page
    assert "0.41% of treatment&#x27;s exposures, none in control" in page or (
        "0.41% of treatment's exposures, none in control" in page
    )
    detail = views.status_detail(status)
    assert (
        "what broke: new in treatment: `KeyError in cart.py:<script>price` (0.41% of"
        " treatment's exposures, none in control); example: `KeyError: 'cart_id'`"
    ) in " ".join(detail.split())
    assert "What broke" not in rollout_detail(RolloutPage(status_of(), EMPTY, guardrails=[]))
