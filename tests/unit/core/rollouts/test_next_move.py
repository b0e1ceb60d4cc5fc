"""Why a rollout is not moving and when it may next move, as a table of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from controller.core.reading.views import RolloutStatus, describe
from controller.core.rollouts.moving import NextMove, next_move
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage, TimeBox
from controller.core.rollouts.policy import Applied, PauseReason
from controller.core.rollouts.rollout import Phase, Rollout, Verdict, VerdictKind
from controller.core.rollouts.windows import Window, Windows, waiting_reason

HOURS: tuple[Window, ...] = TypeAdapter(Windows).validate_python(
    [
        {
            "kind": "allow",
            "timezone": "Europe/Berlin",
            "rule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
            "duration": "8h",
        }
    ]
)
SATURDAY = datetime(2026, 11, 21, 10, tzinfo=UTC)
MONDAY_0900 = datetime(2026, 11, 23, 8, tzinfo=UTC)  # 09:00 in Berlin
T0 = SATURDAY - timedelta(hours=2)
NOW = SATURDAY
WAIT = waiting_reason(HOURS, SATURDAY)
STAGES = [
    Stage(percent=1, min_duration=timedelta(hours=1)),
    Stage(percent=50, min_duration=timedelta(hours=4)),
    Stage(percent=100, min_duration=timedelta(0)),
]
ENDS_AT = datetime(2026, 12, 1, tzinfo=UTC)


def rollout(
    phase: Phase = Phase.RUNNING, *, stage: int = 0, the_plan: Plan | None = None, **extra: Any
) -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id="r1",
        plan=the_plan or Plan(stages=STAGES),
        phase=phase,
        stage=stage,
        stage_started_at=T0,
        salt="s1",
        flag_version=7,
        started_at=T0,
        updated_at=T0,
        **extra,
    )


HOLD = Verdict(VerdictKind.HOLD, "3 units in the smaller arm, 100 needed")
ADVANCE = Verdict(VerdictKind.ADVANCE, "guardrails hold and the stage is complete")
WARNED = Verdict(
    VerdictKind.HOLD,
    "no events in the stage for 1:00:00",
    applied=Applied("no_traffic", "warn", "health_policy.no_traffic"),
)

CASES: list[tuple[str, Rollout, Verdict | None, tuple[Window, ...], NextMove | None]] = [
    (
        "scheduled",
        rollout(Phase.PENDING, scheduled_at=MONDAY_0900),
        None,
        (),
        NextMove(why="scheduled: starts at 2026-11-23 08:00:00 UTC", at=MONDAY_0900.isoformat()),
    ),
    (
        "waiting for the plan's window",
        rollout(stage=1, the_plan=Plan(stages=STAGES, windows=HOURS), window_wait=WAIT),
        ADVANCE,
        (),
        NextMove(why=WAIT, at=MONDAY_0900.isoformat()),
    ),
    (
        "waiting for the team's window",
        rollout(stage=1, window_wait=WAIT),
        ADVANCE,
        HOURS,
        NextMove(why=WAIT, at=MONDAY_0900.isoformat()),
    ),
    (
        "waiting, the team's windows not known here",
        rollout(stage=1, window_wait=WAIT),
        None,
        (),
        NextMove(why=WAIT, at=None),
    ),
    (
        "held by a trigger",
        rollout(Phase.PAUSED, pause_reason=PauseReason.NO_TRAFFIC),
        None,
        (),
        NextMove(why="held by the policy on no_traffic; resumes only by an operator"),
    ),
    (
        "held on a sample ratio mismatch",
        rollout(Phase.PAUSED, pause_reason=PauseReason.SRM),
        None,
        (),
        NextMove(why="held by the policy on sample_ratio_mismatch; resumes only by an operator"),
    ),
    (
        "paused by an operator",
        rollout(Phase.PAUSED, pause_reason=PauseReason.OPERATOR),
        None,
        (),
        NextMove(why="paused by an operator; resumes only by an operator"),
    ),
    (
        "awaiting approval",
        rollout(Phase.PAUSED, pause_reason=PauseReason.AWAITING_APPROVAL),
        None,
        (),
        NextMove(why="awaiting an operator's approval to move on"),
    ),
    (
        "minimum stage time not reached",
        rollout(stage=1),
        HOLD,
        (),
        NextMove(
            why="minimum stage time 4:00:00: 2 h left",
            at=(T0 + timedelta(hours=4)).isoformat(),
        ),
    ),
    (
        "early advance within the minimum time",
        rollout(stage=1),
        ADVANCE,
        (),
        None,
    ),
    (
        "minimum sample not reached",
        rollout(stage=0),
        HOLD,
        (),
        NextMove(why="the gate holds: 3 units in the smaller arm, 100 needed"),
    ),
    (
        "a trigger the policy warns about",
        rollout(stage=0),
        WARNED,
        (),
        NextMove(why="the policy warns on no_traffic: no events in the stage for 1:00:00"),
    ),
    (
        "advisor hold",
        rollout(stage=0, advisor_hold_until=NOW + timedelta(minutes=1)),
        ADVANCE,
        (),
        NextMove(
            why="the advisor held the stage until 2026-11-21 10:01:00 UTC",
            at=(NOW + timedelta(minutes=1)).isoformat(),
        ),
    ),
    (
        "time-boxed",
        rollout(stage=0, the_plan=Plan(stages=STAGES, time_box=TimeBox(ends_at=ENDS_AT))),
        ADVANCE,
        (),
        NextMove(
            why="time-boxed: the flag turns off at 2026-12-01 00:00:00 UTC",
            at=ENDS_AT.isoformat(),
        ),
    ),
    ("moving", rollout(stage=0), ADVANCE, (), None),
    ("completed", rollout(Phase.COMPLETED, stage=2), None, (), None),
    ("rolled back", rollout(Phase.ROLLED_BACK), None, (), None),
]


@pytest.mark.parametrize(
    ("state", "verdict", "team", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_next_move(
    state: Rollout, verdict: Verdict | None, team: tuple[Window, ...], expected: NextMove | None
) -> None:
    assert next_move(state, verdict, NOW, team) == expected


def test_the_window_wait_names_the_opening_in_the_windows_time_zone() -> None:
    assert WAIT.startswith("ready, waiting for the window that opens Mon 09:00 Europe/Berlin")


def test_describe_serves_it_and_an_older_answer_reads_without_it() -> None:
    state = rollout(Phase.PAUSED, pause_reason=PauseReason.OPERATOR)
    served = describe(state, None, NOW).served()
    assert served["next_move"] == {
        "why": "paused by an operator; resumes only by an operator",
        "at": None,
    }
    older = {k: v for k, v in served.items() if k != "next_move"}
    assert RolloutStatus.model_validate(older).next_move is None
