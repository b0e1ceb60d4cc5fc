"""The demo's screens: readable at 80 and 120 columns, built from the gate's own evidence."""

from __future__ import annotations

import dataclasses
import io
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console, RenderableType

from controller.core.machine.gate import evaluate
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.wire.messages import Arm
from controller.demo.options import DemoOptions
from controller.demo.scenario import (
    BETA_RULE,
    COUNTRIES,
    ERROR_RATE_LIMIT,
    PLANS,
    SEGMENTS,
    STAFF,
    STAFF_SHARE,
    UNITS,
    DemoFlag,
    demo_flags,
    demo_plan,
    error_rate,
    users,
)
from controller.demo.screens import message_lines, render_live, render_summary, status_line
from controller.demo.snapshot import (
    AdvisorView,
    ArmView,
    BoundView,
    DemoSnapshot,
    FlagView,
    flag_view,
    rings,
    run_outcome,
)
from controller.demo.tracking import Tracker

FAULTY = "checkout.payment-provider-v2-with-3ds-challenge"
HEALTHY = "onboarding.progressive-signup-form-variant-b"
RATIONALE = (
    "Treatment and control error rates are within noise of each other and both arms "
    "have enough units; nothing in the data argues against the next stage. " * 3
)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def view(**changes: Any) -> FlagView:
    base: dict[str, Any] = {
        "flag": HEALTHY,
        "faulty": False,
        "phase": "running",
        "stage": 3,
        "stages": 5,
        "stage_percent": 50.0,
        "percent": 50.0,
        "seconds_in_stage": 3.4,
        "treatment": ArmView(3012, 3012, 61),
        "control": ArmView(2990, 2990, 58),
        "rings": (),
        "bound": BoundView(0.0008, -0.0120, 0.0136, 1.0, regressed=False),
        "limits": "",
        "live": True,
        "note": "gate: hold, minimum stage time 0:00:05 not reached",
        "advisor": AdvisorView("advance", 0.9, RATIONALE),
        "advice_counts": (("advance", 3),),
        "decisions": 5,
        "stages_passed": 3,
        "rollback_reason": None,
        "rollback_alerted": False,
    }
    return FlagView(**{**base, **changes})


ROLLED_BACK = view(
    flag=FAULTY,
    faulty=True,
    phase="rolled_back",
    stage=2,
    stage_percent=25.0,
    percent=0.0,
    seconds_in_stage=None,
    treatment=ArmView(1523, 1523, 97),
    control=ArmView(4612, 4612, 88),
    bound=BoundView(0.0446, 0.0210, 0.0682, 1e-9, regressed=True),
    live=False,
    note="error rate +4.5 pp [+2.1, +6.8] (+230%), regressed (p = 1e-09)",
    advisor=AdvisorView("unavailable", None, "timeout after 30.0 s"),
    advice_counts=(("advance", 2), ("unavailable", 1)),
    decisions=4,
    stages_passed=2,
    rollback_reason="error rate +4.5 pp [+2.1, +6.8] (+230%), regressed (p = 1e-09)",
    rollback_alerted=True,
)
SNAPSHOT = DemoSnapshot(
    elapsed_s=41.7,
    flags=(ROLLED_BACK, view()),
    events_sent=123_456,
    events_per_s=3210.0,
    advisor="advisory, smollm2-135m-instruct",
    fault=f"{FAULTY}'s treatment fails 4x as often (2% -> 8%) from its first ring",
    log_path="/tmp/rollout-demo-decisions-abcdefgh.jsonl",
)


def rendered(renderable: RenderableType, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def assert_fits(text: str, width: int) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, too_long


# -- the live view -----------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_live_view_keeps_every_important_column_within_the_width(width: int) -> None:
    text = rendered(render_live(SNAPSHOT), width)
    assert_fits(text, width)
    for expected in (
        FAULTY,
        HEALTHY,
        "rolled_back",
        "running",
        "stage 3/5 (25%)",
        "serving 0%",
        "stage 4/5 (50%)",
        "3.4 s in stage",
        "6.37%",  # faulty treatment: 97 / 1,523
        "1.91%",  # its control: 88 / 4,612
        "2.03%",  # healthy treatment: 61 / 3,012
        "1.94%",  # its control: 58 / 2,990
        "1,523",
        "4,612",
        "regressed: error rate +4.5 pp [+2.1, +6.8], p = 1e-09",
        # +0.08 pp past a tolerance of 0, not significant: watched, never "no regression"
        "watching: error rate +0.1 pp [-1.2, +1.4], p = 1",
        "advisor says advance (confidence 0.90); advisor's rationale:",
        "advisor unavailable: timeout after 30.0 s",
        "3,210 events/s",
    ):
        assert expected in text, f"{expected!r} missing at width {width}:\n{text}"
    assert "…" in text  # the rationale is cut short, not the numbers


def test_live_view_tells_the_current_stage_from_the_last_comparison() -> None:
    text = rendered(render_live(SNAPSHOT), 120)
    assert "this stage" in text
    assert "last comparison" in text


def test_a_flag_without_data_yet_says_so() -> None:
    waiting = view(bound=None, treatment=ArmView(), control=ArmView(), advisor=None)
    text = rendered(render_live(dataclasses.replace(SNAPSHOT, flags=(waiting,))), 80)
    assert "error rate not yet tested (too few events)" in text
    assert "advisor says advance" not in text


def test_the_live_view_says_when_the_model_is_too_small_to_count() -> None:
    small = AdvisorView("advance", 0.9, "fine", model="smollm2-135m-instruct")
    text = rendered(render_live(dataclasses.replace(SNAPSHOT, flags=(view(advisor=small),))), 200)
    assert (
        "advisor (smollm2-135m-instruct, too small for its opinion to carry weight) says advance"
        ' (confidence 0.90); advisor\'s rationale: "fine"'
    ) in text


# -- the summary ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120])
def test_summary_shows_the_outcome_of_every_flag(width: int) -> None:
    done = view(phase="completed", percent=100.0, stage=4, stage_percent=100.0, stages_passed=5)
    text = rendered(render_summary([ROLLED_BACK, done]), width)
    assert_fits(text, width)
    for expected in (FAULTY, HEALTHY, "rolled_back", "completed", "0%", "100%", "2/5", "5/5"):
        assert expected in text, f"{expected!r} missing at width {width}:\n{text}"
    assert "error rate +4.5 pp" in " ".join(text.split())
    assert "regressed" in text
    assert "advance=2 unavailable=1" in " ".join(text.split())


def test_summary_is_one_table_where_it_fits_and_cards_where_it_does_not() -> None:
    short = [
        view(flag="checkout.payment-provider-v2", phase="rolled_back", rollback_reason="x"),
        view(flag="search.ranking-model-v7", phase="completed"),
    ]
    wide = rendered(render_summary(short), 120)
    header = next(line for line in wide.splitlines() if "flag" in line)
    assert "decisions" in header  # every column side by side
    assert wide.count("final phase") == 1
    narrow = rendered(render_summary(short), 80)
    assert narrow.count("final phase") == 2  # one card per flag


# -- plain lines ---------------------------------------------------------------------------


def test_plain_lines_carry_state_evidence_and_advice() -> None:
    line = status_line(12.5, ROLLED_BACK)
    assert line.startswith("[  12.5s] checkout.payment-provider-v2-with-3ds-challenge: rolled_back")
    assert "error rate T 6.37% C 1.91%" in line
    reason = "guardrails hold and the stage is complete"
    decision: dict[str, Any] = {
        "type": "decision",
        "flag": HEALTHY,
        "action": "advance",
        "outcome": "applied",
        "reason": reason,
        "evidence": {
            "advisor": {
                "status": "ok",
                "action": "advance",
                "confidence": 0.9,
                "rationale": "error rate flat",
                "latency_ms": 1234.0,
            },
            "at_stage": {"index": 1, "of": 5, "percent": 5.0},
        },
    }
    lines = list(message_lines(3.0, {**decision, "stage": 2}))
    assert lines[0].endswith(
        f"{HEALTHY}: advance applied at stage 2/5 (5%) (now stage 3/5): {reason}"
    )
    said = "advisor says advance (confidence 0.9, 1.2 s); advisor's rationale: error rate flat"
    assert lines[1].endswith(said)
    decision["evidence"]["advisor"]["model"] = "smollm2-135m-instruct"
    small = list(message_lines(3.0, decision))[1]
    assert small.endswith(
        f"{HEALTHY}: advisor (smollm2-135m-instruct, too small for its opinion to carry weight)"
        " says advance (confidence 0.9, 1.2 s); advisor's rationale: error rate flat"
    )
    alert = {"type": "alert", "severity": "critical", "kind": "rollback", "summary": "rolled"}
    assert list(message_lines(4.0, alert)) == ["[   4.0s] ALERT critical rollback: rolled"]


# -- snapshots from the gate's evidence ---------------------------------------------------


def rollout(phase: Phase, stage: int) -> Rollout:
    started = NOW - timedelta(seconds=7)
    return Rollout(
        flag=FAULTY,
        rollout_id="r1",
        plan=demo_plan(),
        phase=phase,
        stage=stage,
        stage_started_at=started,
        salt="s",
        flag_version=stage + 1,
        stage_versions={i: [i + 1] for i in range(stage + 1)},
        started_at=started,
        updated_at=started,
    )


def aggregates(t_errors: int, c_errors: int) -> FlagAggregates:
    return FlagAggregates(
        flag=FAULTY,
        versions=frozenset({3}),
        treatment=ArmAggregate(exposures=2000, units=1500, requests=2000, errors=t_errors),
        control=ArmAggregate(exposures=6000, units=4400, requests=6000, errors=c_errors),
    )


def test_a_running_flag_shows_the_live_verdict_of_the_pure_gate() -> None:
    state = rollout(Phase.RUNNING, 2)
    verdict = evaluate(state, aggregates(120, 120), NOW)
    shown = flag_view(DemoFlag(FAULTY, faulty=True), state, verdict, Tracker().record(FAULTY), NOW)
    assert (shown.phase, shown.stage_percent, shown.percent) == ("running", 25.0, 25.0)
    assert shown.live
    assert shown.seconds_in_stage == pytest.approx(7.0)
    assert (shown.treatment.errors, shown.control.requests) == (120, 6000)
    assert shown.treatment.error_rate == pytest.approx(0.06)
    assert shown.bound is not None
    assert shown.bound.regressed
    assert shown.bound.lower > 0
    # 6% against control's 2%: +4.0 pp, +200% on control, the reason as every text writes it
    assert shown.note.startswith("gate: rollback, error rate +4.0 pp [")
    assert "(+200%), regressed (p = " in shown.note


def published(message_type: str, **fields: Any) -> dict[str, Any]:
    """A decision or alert as the controller publishes it: with its envelope."""
    envelope = {"type": message_type, "v": 1, "id": f"{message_type}-1", "ts": 1_767_225_600_000}
    return {**envelope, **fields}


def test_a_finished_flag_shows_the_evidence_it_was_decided_on() -> None:
    tracker = Tracker()
    decided = evaluate(rollout(Phase.RUNNING, 2), aggregates(120, 120), NOW)
    for message in (
        {"type": "flag_state", "flag": FAULTY, "percent": 0.0},
        published(
            "decision",
            flag=FAULTY,
            kind="gate",
            action="rollback",
            outcome="applied",
            reason=decided.reason,
            evidence=decided.evidence.wire(),
        ),
        published("alert", flag=FAULTY, kind="rollback", severity="critical", summary="rolled"),
    ):
        tracker.observe(message)
    state = rollout(Phase.ROLLED_BACK, 2)
    shown = flag_view(DemoFlag(FAULTY, faulty=True), state, None, tracker.record(FAULTY), NOW)
    assert (shown.phase, shown.percent, shown.stages_passed) == ("rolled_back", 0.0, 2)
    assert not shown.live
    assert shown.seconds_in_stage is None
    assert shown.treatment.errors == 120
    assert shown.bound is not None
    assert shown.bound.regressed
    assert shown.rollback_reason == decided.reason
    assert shown.rollback_alerted
    assert run_outcome([shown]) == (True, [])


def test_advice_is_counted_from_every_decision_that_carries_it() -> None:
    tracker = Tracker()
    for advice in (
        {"status": "ok", "action": "advance", "confidence": 0.9, "rationale": "a"},
        {"status": "unavailable", "cause": "timeout"},
        {"status": "ok", "action": "hold", "confidence": 0.4, "rationale": "too few units"},
    ):
        tracker.observe(
            published(
                "decision",
                flag=HEALTHY,
                kind="gate",
                action="advance",
                outcome="applied",
                evidence={"advisor": advice},
            )
        )
    record = tracker.record(HEALTHY)
    assert record.decisions == 3
    assert dict(record.advice_counts()) == {"advance": 1, "unavailable": 1, "hold": 1}
    shown = flag_view(DemoFlag(HEALTHY, faulty=False), None, None, record, NOW)
    assert shown.advisor == AdvisorView("hold", 0.4, "too few units")
    assert shown.phase == "pending"


@pytest.mark.parametrize(
    ("faulty_phase", "alerted", "healthy_phase", "ok"),
    [
        ("rolled_back", True, "completed", True),
        ("rolled_back", False, "completed", False),  # the alert is part of the story
        ("completed", False, "completed", False),  # the fault slipped through
        ("rolled_back", True, "running", False),  # ran out of time
        ("rolled_back", True, "rolled_back", False),  # a false alarm on a healthy flag
    ],
)
def test_the_run_passes_only_when_each_flag_ends_as_it_should(
    faulty_phase: str, alerted: bool, healthy_phase: str, ok: bool
) -> None:
    views = [
        view(flag=FAULTY, faulty=True, phase=faulty_phase, rollback_alerted=alerted),
        view(phase=healthy_phase),
    ]
    passed, problems = run_outcome(views)
    assert passed is ok
    assert len(problems) == (0 if ok else 1)


# -- the scenario and its options ------------------------------------------------------------


def test_the_first_flag_is_the_faulty_one_and_fails_four_times_as_often_from_the_start() -> None:
    flags = demo_flags(3)
    assert [f.faulty for f in flags] == [True, False, False]
    assert len({f.name for f in flags}) == 3
    faulty, treatment = flags[0].faulty, Arm.TREATMENT
    assert error_rate(faulty=faulty, arm=treatment) == pytest.approx(0.08)
    assert error_rate(faulty=faulty, arm=Arm.CONTROL) == 0.02
    assert error_rate(faulty=False, arm=treatment) == 0.02
    assert error_rate(faulty=False, arm=treatment) < ERROR_RATE_LIMIT


def test_the_plan_walks_the_rings_from_staff_to_everyone() -> None:
    plan = demo_plan()
    assert plan.targeted
    assert rings(plan) == (
        'user_id in segment("staff") 100%',
        'user_id in segment("beta") 100%',
        'country == "TH" 25%',
        "everyone 50%",
        "everyone 100%",
    )
    assert plan.limits is not None
    assert plan.limits.error_rate == ERROR_RATE_LIMIT
    assert set(SEGMENTS) == {"staff", "beta"}
    assert SEGMENTS["beta"] == BETA_RULE


def test_the_users_carry_attributes_and_staff_and_beta_send_their_share() -> None:
    people = users()
    assert len(people.contexts) == UNITS
    assert len(people.staff) == len(STAFF)
    assert {people.contexts[i]["user_id"] for i in people.staff} == set(STAFF)
    assert all(people.contexts[i].get("beta") is True for i in people.beta)
    assert 0.03 < len(people.beta) / UNITS < 0.07
    assert {c["country"] for c in people.contexts} == set(COUNTRIES)
    assert {c["plan"] for c in people.contexts} == set(PLANS)
    rng = random.Random(1)
    picked = [people.pick(rng)["user_id"] for _ in range(20_000)]
    staff = sum(unit in set(STAFF) for unit in picked) / len(picked)
    assert STAFF_SHARE < staff < STAFF_SHARE + 0.02  # and a few of anyone's requests
    assert users() == people  # the same users every run


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"flags": 0}, "--flags"),
        ({"flags": 6}, "--flags"),
        ({"duration": 1}, "--duration"),
    ],
)
def test_bad_options_are_refused_naming_the_option(changes: dict[str, Any], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        DemoOptions(**changes)


def staff_aggregates(t_errors: int) -> FlagAggregates:
    return FlagAggregates(
        flag=FAULTY,
        versions=frozenset({1}),
        treatment=ArmAggregate(exposures=1500, units=200, requests=1500, errors=t_errors),
        control=ArmAggregate(),
    )


def test_a_ring_served_to_all_of_its_audience_is_tested_against_its_limit() -> None:
    """The staff ring has no control: the view shows the limit's test, and the ring."""
    state = rollout(Phase.RUNNING, 0)
    verdict = evaluate(state, staff_aggregates(120), NOW)  # 8% against a 3% limit
    assert verdict.kind.value == "rollback"
    shown = flag_view(DemoFlag(FAULTY, faulty=True), state, verdict, Tracker().record(FAULTY), NOW)
    assert shown.ring == 'user_id in segment("staff") 100%'
    assert shown.limits.startswith("none (no concurrent control): gated on absolute limits:")
    assert "error_rate: 8% [5%, 11%] against its limit 3.0%, breached" in shown.limits
    line = status_line(6.0, shown)
    assert 'stage 1/5 (100%), ring user_id in segment("staff") 100%' in line
    assert "error_rate: 8% [5%, 11%] against its limit 3.0%, breached" in line
    text = rendered(render_live(dataclasses.replace(SNAPSHOT, flags=(shown,))), 120)
    assert 'rings: user_id in segment("staff") 100% → user_id in segment("beta") 100%' in text
    assert "everyone 100%" in text
    # Once rolled back, the summary names the ring it was caught in, and why
    tracker = Tracker()
    tracker.observe(
        published(
            "decision",
            flag=FAULTY,
            kind="gate",
            action="rollback",
            outcome="applied",
            reason=verdict.reason,
            evidence=verdict.evidence.wire(),
            stage=0,
        )
    )
    done = rollout(Phase.ROLLED_BACK, 0)
    final = flag_view(DemoFlag(FAULTY, faulty=True), done, None, tracker.record(FAULTY), NOW)
    assert "error_rate: 8% [5%, 11%] against its limit 3.0%, breached" in final.limits
    assert final.rollback_reason is not None
    assert final.rollback_reason.startswith("error_rate 0.08 is above its limit 0.03")
    summary = rendered(render_summary([final]), 200)
    assert 'user_id in segment("staff") 100%' in summary
    assert "0/5" in summary
    decision: dict[str, Any] = {"type": "decision", "flag": FAULTY, "action": "rollback"}
    decision["outcome"] = "applied"
    at_stage = {"index": 0, "of": 5, "percent": 100.0}
    evidence = {**verdict.evidence.wire(), "at_stage": at_stage}
    decision |= {"reason": verdict.reason, "evidence": evidence, "stage": 0}
    [said] = [x for x in message_lines(6.0, decision) if "rollback applied" in x]
    assert 'rollback applied at stage 1/5 (100%), ring user_id in segment("staff") 100%: ' in said


def test_an_incoherent_opinion_is_shown_as_such_never_quoted() -> None:
    """The demo once printed "says advance ...; advisor's rationale: rollback"."""
    tracker = Tracker()
    advice = {"status": "ok", "action": "advance", "confidence": 0.9, "rationale": "rollback"}
    decision = published("decision", flag=HEALTHY, kind="gate", action="advance", outcome="applied")
    tracker.observe({**decision, "evidence": {"advisor": advice}})
    shown = flag_view(DemoFlag(HEALTHY, faulty=False), None, None, tracker.record(HEALTHY), NOW)
    assert shown.advisor == AdvisorView(
        "advance", 0.9, "", incoherence="its rationale gives no reason"
    )
    text = rendered(render_live(dataclasses.replace(SNAPSHOT, flags=(shown,))), 200)
    assert (
        "advisor says advance (confidence 0.90); incoherent, rationale not quoted: its"
        " rationale gives no reason"
    ) in text
    assert "rationale: rollback" not in text
    assert '"rollback"' not in text
    (_, line) = message_lines(3.0, {**decision, "evidence": {"advisor": advice}})
    assert line.endswith("incoherent, rationale not quoted: its rationale gives no reason")
