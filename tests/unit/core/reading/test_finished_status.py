"""A finished rollout's status: why it ended, on what evidence, and a stage clock that stopped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core.machine.machine import step
from controller.core.reading.views import RolloutStatus, describe
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import (
    CommandInput,
    GateInput,
    Input,
    MonitorDownInput,
    Phase,
    Rollout,
    Verdict,
    VerdictKind,
)
from controller.core.wire import GateEvidence, JsonObject
from controller.core.wire.messages import CommandAction
from controller.ctl.looking.views import status_detail
from tests.support.documents import sequential_test

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=20)
LATER = NOW + timedelta(days=2)
PLAN = Plan(stages=[Stage(percent=5, min_duration=timedelta(minutes=5)), Stage(percent=50)])
TALLY = {"exposures": 0, "requests": 0, "errors": 0, "conversions": 0}
EVIDENCE: JsonObject = {
    "arms": {"treatment": {"units": 400, **TALLY}, "control": {"units": 7600, **TALLY}},
    "guardrails": {"error_rate": sequential_test(delta=0.03, regressed=True)},
    "breach": "error_rate",
}
RUNNING = Rollout(
    flag="checkout",
    rollout_id="r1",
    plan=PLAN,
    phase=Phase.RUNNING,
    stage=0,
    stage_started_at=T0,
    salt="s1",
    flag_version=1,
    stage_versions={0: [1]},
    started_at=T0,
    updated_at=T0,
)


def command(action: CommandAction, reason: str) -> CommandInput:
    return CommandInput(
        action=action, flag="checkout", command_id="c1", actor="ana", now=NOW, reason=reason
    )


ENDINGS: dict[str, tuple[Input, Phase, str, dict[str, object]]] = {
    "gate rollback": (
        GateInput(
            Verdict(
                VerdictKind.ROLLBACK,
                "error_rate +3 pp, regressed",
                None,
                GateEvidence.tolerant(EVIDENCE),
            ),
            NOW,
        ),
        Phase.ROLLED_BACK,
        "error_rate +3 pp, regressed",
        {"breach": "error_rate", "arms": EVIDENCE["arms"]},
    ),
    "operator kill": (
        command(CommandAction.KILL, "pager"),
        Phase.KILLED,
        "pager",
        {"actor": "ana"},
    ),
    "operator abort": (
        command(CommandAction.ABORT, "wrong flag"),
        Phase.ABORTED,
        "wrong flag",
        {"actor": "ana"},
    ),
    "monitor kill": (
        MonitorDownInput("checkout-api", "inc-9", NOW),
        Phase.KILLED,
        "monitor checkout-api is down",
        {"monitor": "checkout-api", "incident": "inc-9"},
    ),
}


@pytest.mark.parametrize("name", ENDINGS)
def test_a_finished_rollout_says_why_it_ended_on_what_evidence(name: str) -> None:
    event, phase, reason, evidence = ENDINGS[name]
    ended, _ = step(RUNNING, event)
    assert ended is not None
    assert ended.phase is phase
    # Read back as the store would, then shown days later.
    stored = Rollout.model_validate_json(ended.model_dump_json())
    view = describe(stored, None, LATER)
    assert view.verdict_reason == reason
    assert evidence.items() <= view.evidence.wire().items()
    assert view.evidence.at_stage is not None
    assert view.evidence.at_stage.label == "stage 1/2 (5%)"
    assert view.time_in_stage_s == (NOW - T0).total_seconds()  # stopped at its end
    assert view.ended_at == NOW.isoformat()


def test_the_detail_names_the_ending_decision() -> None:
    ended, _ = step(RUNNING, command(CommandAction.KILL, "pager"))
    assert ended is not None
    text = status_detail(RolloutStatus.model_validate(describe(ended, None, LATER).served()))
    assert "ended:       killed at 2026-11-22 12:20:00 UTC: pager" in text
    assert "in stage:    20m00s" in text


def test_a_state_stored_before_endings_were_kept_still_loads_with_its_clock_stopped() -> None:
    old = RUNNING.model_copy(update={"phase": Phase.KILLED, "updated_at": NOW})
    stored = old.model_dump(mode="json")
    del stored["ended"]
    view = describe(Rollout.model_validate(stored), None, LATER)
    assert (view.verdict_reason, view.evidence.wire(), view.ended_at) == (None, {}, None)
    assert view.time_in_stage_s == (NOW - T0).total_seconds()


def test_a_running_rollout_keeps_no_ending_and_its_clock_runs() -> None:
    assert RUNNING.ended is None
    assert describe(RUNNING, None, LATER).time_in_stage_s == (LATER - T0).total_seconds()
