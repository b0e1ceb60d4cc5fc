"""Release windows in the state machine: forward moves wait, safety never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from controller.core.machine.machine import step
from controller.core.rollouts.actions import Action, RaiseAlert, RecordDecision
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage, Watch
from controller.core.rollouts.policy import PauseReason
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
from controller.core.rollouts.windows import Window, Windows
from controller.core.wire import GateEvidence
from controller.core.wire.messages import CommandAction

BERLIN_HOURS = {
    "kind": "allow",
    "name": "business-hours",
    "timezone": "Europe/Berlin",
    "rule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
    "duration": "8h",
}
HOURS: tuple[Window, ...] = TypeAdapter(Windows).validate_python([BERLIN_HOURS])
FRIDAY_1755 = datetime(2026, 11, 20, 16, 55, tzinfo=UTC)  # 17:55 in Berlin
SATURDAY = datetime(2026, 11, 21, 10, tzinfo=UTC)
MONDAY_0900 = datetime(2026, 11, 23, 8, tzinfo=UTC)
T0 = FRIDAY_1755 - timedelta(hours=2)
STAGES = [
    Stage(percent=1, min_duration=timedelta(minutes=5)),
    Stage(percent=50, min_duration=timedelta(minutes=5)),
    Stage(percent=100, min_duration=timedelta(0)),
]


def plan(windows: tuple[Window, ...] | None = HOURS, **extra: Any) -> Plan:
    return Plan(stages=STAGES, windows=windows, **extra)


def rollout(
    phase: Phase = Phase.RUNNING, *, stage: int = 1, the_plan: Plan | None = None, **extra: Any
) -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id="r1",
        plan=the_plan or plan(),
        phase=phase,
        stage=stage,
        stage_started_at=T0,
        salt="s1",
        flag_version=7,
        stage_versions={0: [5, 6], 1: [7]},
        started_at=T0,
        updated_at=T0,
        **extra,
    )


def gate(kind: VerdictKind, now: datetime, **extra: Any) -> GateInput:
    pause = PauseReason.SRM if kind is VerdictKind.PAUSE else None
    return GateInput(Verdict(kind, f"gate says {kind.value}", pause, GateEvidence()), now, **extra)


def cmd(action: CommandAction, now: datetime, **extra: Any) -> CommandInput:
    return CommandInput(
        action=action, flag="checkout", command_id="c1", actor="ana", now=now, **extra
    )


def summary(actions: list[Action]) -> str:
    parts = []
    for action in actions:
        if isinstance(action, RecordDecision):
            parts.append(action.action if action.outcome == "applied" else "reject")
        elif isinstance(action, RaiseAlert):
            parts.append(f"alert:{action.kind}")
    return "+".join(parts) or "-"


# (what, state, input, phase after, stage after, actions, waiting after)
WAITING = rollout(window_wait="ready, waiting for the window that opens Mon 09:00 Europe/Berlin")
CASES: list[tuple[str, Rollout, Input, Phase, int, str, bool]] = [
    (
        "advance inside the window",
        rollout(),
        gate(VerdictKind.ADVANCE, MONDAY_0900),
        Phase.RUNNING,
        2,
        "advance",
        False,
    ),
    (
        "advance Friday 17:55 waits",
        rollout(),
        gate(VerdictKind.ADVANCE, FRIDAY_1755),
        Phase.RUNNING,
        1,
        "wait",
        True,
    ),
    (
        "advance on Saturday waits",
        rollout(),
        gate(VerdictKind.ADVANCE, SATURDAY),
        Phase.RUNNING,
        1,
        "wait",
        True,
    ),
    (
        "a wait going on is not recorded again",
        WAITING,
        gate(VerdictKind.ADVANCE, SATURDAY),
        Phase.RUNNING,
        1,
        "-",
        True,
    ),
    (
        "the wait ends Monday 09:00",
        WAITING,
        gate(VerdictKind.ADVANCE, MONDAY_0900),
        Phase.RUNNING,
        2,
        "advance",
        False,
    ),
    (
        "a regression on Saturday rolls back",
        WAITING,
        gate(VerdictKind.ROLLBACK, SATURDAY),
        Phase.ROLLED_BACK,
        1,
        "rollback+alert:rollback",
        False,
    ),
    (
        "SRM on Saturday pauses",
        WAITING,
        gate(VerdictKind.PAUSE, SATURDAY),
        Phase.PAUSED,
        1,
        "pause:srm+alert:srm",
        False,
    ),
    (
        "hold on Saturday: nothing",
        rollout(),
        gate(VerdictKind.HOLD, SATURDAY),
        Phase.RUNNING,
        1,
        "-",
        False,
    ),
    (
        "operator rollback on Saturday",
        WAITING,
        cmd(CommandAction.ROLLBACK, SATURDAY),
        Phase.ROLLED_BACK,
        1,
        "rollback+alert:rollback",
        False,
    ),
    (
        "operator pause on Saturday",
        WAITING,
        cmd(CommandAction.PAUSE, SATURDAY),
        Phase.PAUSED,
        1,
        "pause",
        False,
    ),
    (
        "abort on Saturday",
        WAITING,
        cmd(CommandAction.ABORT, SATURDAY),
        Phase.ABORTED,
        1,
        "abort",
        False,
    ),
    (
        "kill on Saturday",
        WAITING,
        cmd(CommandAction.KILL, SATURDAY),
        Phase.KILLED,
        1,
        "kill+alert:kill",
        False,
    ),
    (
        "monitor down on Saturday",
        WAITING,
        MonitorDownInput("api", "inc-1", SATURDAY),
        Phase.KILLED,
        1,
        "kill+alert:kill",
        False,
    ),
    (
        "resume on Saturday",
        rollout(Phase.PAUSED, pause_reason=PauseReason.OPERATOR),
        cmd(CommandAction.RESUME, SATURDAY),
        Phase.RUNNING,
        1,
        "resume",
        False,
    ),
    (
        "promote on Saturday is refused",
        rollout(),
        cmd(CommandAction.PROMOTE, SATURDAY),
        Phase.RUNNING,
        1,
        "reject",
        False,
    ),
    (
        "promote to the end on Saturday is refused",
        rollout(),
        cmd(CommandAction.PROMOTE, SATURDAY, to_end=True),
        Phase.RUNNING,
        1,
        "reject",
        False,
    ),
    (
        "promote on Monday",
        rollout(),
        cmd(CommandAction.PROMOTE, MONDAY_0900),
        Phase.RUNNING,
        2,
        "promote",
        False,
    ),
    (
        "approve on Saturday is refused",
        rollout(Phase.PAUSED, pause_reason=PauseReason.AWAITING_APPROVAL),
        cmd(CommandAction.APPROVE, SATURDAY),
        Phase.PAUSED,
        1,
        "reject",
        False,
    ),
    (
        "approve on Monday",
        rollout(Phase.PAUSED, pause_reason=PauseReason.AWAITING_APPROVAL),
        cmd(CommandAction.APPROVE, MONDAY_0900),
        Phase.RUNNING,
        2,
        "approve",
        False,
    ),
    (
        "no windows: advance on Saturday",
        rollout(the_plan=plan(None)),
        gate(VerdictKind.ADVANCE, SATURDAY),
        Phase.RUNNING,
        2,
        "advance",
        False,
    ),
    (
        "the team's windows for a plan naming none",
        rollout(the_plan=plan(None)),
        gate(VerdictKind.ADVANCE, SATURDAY, team_windows=HOURS),
        Phase.RUNNING,
        1,
        "wait",
        True,
    ),
    (
        "a plan's [] overrides the team's",
        rollout(the_plan=plan(())),
        gate(VerdictKind.ADVANCE, SATURDAY, team_windows=HOURS),
        Phase.RUNNING,
        2,
        "advance",
        False,
    ),
    (
        "the team's windows for promote",
        rollout(the_plan=plan(None)),
        cmd(CommandAction.PROMOTE, SATURDAY, team_windows=HOURS),
        Phase.RUNNING,
        1,
        "reject",
        False,
    ),
]


@pytest.mark.parametrize(
    ("state", "event", "phase", "stage", "actions", "waiting"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_windows_in_the_machine(
    state: Rollout, event: Input, phase: Phase, stage: int, actions: str, waiting: bool
) -> None:
    new, done = step(state, event)
    assert new is not None
    assert (new.phase, new.stage, summary(done)) == (phase, stage, actions)
    assert (new.window_wait is not None) is waiting


def test_a_wait_is_recorded_once_with_when_it_opens() -> None:
    first, actions = step(rollout(), gate(VerdictKind.ADVANCE, FRIDAY_1755))
    assert first is not None
    assert first.window_wait is not None
    assert first.window_wait.startswith(
        "ready, waiting for the window that opens Mon 09:00 Europe/Berlin"
    )
    assert first.flag_version == 7  # nothing published: the flag serves what it served
    [wait] = actions
    assert isinstance(wait, RecordDecision)
    assert wait.evidence.window is not None
    assert wait.evidence.window.opens_at == MONDAY_0900.isoformat()
    again, more = step(first, gate(VerdictKind.ADVANCE, SATURDAY))
    assert (again, more) == (first, [])


def test_a_refused_promote_says_when_the_window_opens() -> None:
    _, [refusal] = step(rollout(), cmd(CommandAction.PROMOTE, SATURDAY))
    assert isinstance(refusal, RecordDecision)
    assert refusal.reason == (
        "outside every allow window; ready, waiting for the window that opens"
        " Mon 09:00 Europe/Berlin"
    )


def test_the_end_of_a_watch_waits_for_the_window() -> None:
    the_plan = Plan(stages=STAGES, windows=HOURS, watch=Watch(duration=timedelta(hours=1)))
    state = rollout(stage=2, the_plan=the_plan, watch_until=FRIDAY_1755 - timedelta(minutes=5))
    waiting, actions = step(state, gate(VerdictKind.ADVANCE, FRIDAY_1755))
    assert waiting is not None
    assert (waiting.phase, summary(actions)) == (Phase.RUNNING, "wait")
    done, actions = step(waiting, gate(VerdictKind.ADVANCE, MONDAY_0900))
    assert done is not None
    assert (done.phase, summary(actions), done.window_wait) == (Phase.COMPLETED, "complete", None)


# -- a start whose windows never open again -----------------------------------------------

FIVE_DAYS_OF_2024: tuple[Window, ...] = TypeAdapter(Windows).validate_python(
    [{"kind": "allow", "rule": "FREQ=DAILY;COUNT=5", "duration": "1h"}]
)
A_ONE_OFF_TO_SUNDAY: tuple[Window, ...] = TypeAdapter(Windows).validate_python(
    [{"kind": "allow", "from": "2026-11-20T09:00:00Z", "to": "2026-11-22T00:00:00Z"}]
)
# (what, the plan's windows (None: it names none), the team's, the start's at, its refusal)
STARTS: list[tuple[str, tuple[Window, ...] | None, tuple[Window, ...], datetime | None, str]] = [
    ("the team's windows are over", None, FIVE_DAYS_OF_2024, None,
     "the team's windows (engine.windows_file): no window opens from 2026-11-21 10:00 UTC on"),
    ("the plan's windows are over", FIVE_DAYS_OF_2024, HOURS, None,
     "the plan's windows: no window opens from 2026-11-21 10:00 UTC on"),
    ("a start scheduled after the plan's last window", A_ONE_OFF_TO_SUNDAY, (), MONDAY_0900,
     "the plan's windows: no window opens from 2026-11-23 08:00 UTC on"),
    ("a plan naming no windows opts out of the team's", (), FIVE_DAYS_OF_2024, None, ""),
    ("the team's windows open again", None, HOURS, None, ""),
    ("a start inside the plan's last window", A_ONE_OFF_TO_SUNDAY, (), None, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("windows", "team", "at", "refusal"), [c[1:] for c in STARTS], ids=[c[0] for c in STARTS]
)
def test_a_start_whose_windows_never_open_again_is_refused(
    windows: tuple[Window, ...] | None, team: tuple[Window, ...], at: datetime | None, refusal: str
) -> None:
    start = cmd(
        CommandAction.START,
        SATURDAY,
        plan=plan(windows),
        team_windows=team,
        at=at,
        new_rollout_id="r2",
        new_salt="s2",
    )
    new, actions = step(None, start)
    decisions = [a for a in actions if isinstance(a, RecordDecision)]
    assert len(decisions) == 1
    if refusal:
        assert (new, decisions[0].outcome) == (None, "rejected")
        assert decisions[0].reason.startswith(refusal)
        assert "would wait at its first stage forever" in decisions[0].reason
    else:
        assert new is not None
        assert decisions[0].outcome == "applied"
