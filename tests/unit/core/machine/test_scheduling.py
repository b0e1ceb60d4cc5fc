"""Scheduled starts and time-boxed flags in the state machine and at admission."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from controller.core.common.errors import ConfigError
from controller.core.machine import scheduling
from controller.core.machine.commands import admitted, refusal
from controller.core.machine.machine import step
from controller.core.machine.operator import applicable
from controller.core.rollouts.actions import PublishFlagState, RecordDecision
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rollouts.plan_parts import Stage, TimeBox
from controller.core.rollouts.rollout import (
    CommandInput,
    CommandRefused,
    Input,
    Phase,
    Rollout,
    TickInput,
)
from controller.core.rollouts.windows import Windows
from controller.core.wire import ScheduleRecord, TimeBoxRecord, sent_object
from controller.core.wire.messages import Command, CommandAction
from controller.ctl.operate.commands import command_model
from controller.ctl.usage import UsageError

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)  # a Monday
AT = T0 + timedelta(hours=2)
STAGES = [Stage(percent=10, min_duration=timedelta(minutes=5)), Stage(percent=100)]


def plan(**extra: Any) -> Plan:
    return Plan(stages=STAGES, windows=(), **extra)


def start(
    at: datetime | None = AT, the_plan: Plan | None = None, command_id: str = "c-start"
) -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag="checkout",
        command_id=command_id,
        actor="ana",
        now=T0,
        plan=the_plan or plan(),
        at=at,
        new_rollout_id="r-sched",
        new_salt="salt-sched",
    )


def command(action: CommandAction, now: datetime, cid: str = "c2") -> CommandInput:
    return CommandInput(action=action, flag="checkout", command_id=cid, actor="bo", now=now)


def run(state: Rollout | None, *events: Input) -> tuple[Rollout | None, list[RecordDecision]]:
    """The state after ``events``, each step's state round-tripped through its JSON (a restart)."""
    decisions: list[RecordDecision] = []
    for event in events:
        state, actions = step(state, event)
        decisions += [a for a in actions if isinstance(a, RecordDecision)]
        if state is not None:
            state = Rollout.model_validate_json(state.model_dump_json())
    return state, decisions


def scheduled() -> Rollout:
    state, _ = run(None, start())
    assert state is not None
    return state


# -- a scheduled start ----------------------------------------------------------------


def test_a_start_with_a_future_at_is_pending_and_serves_nothing() -> None:
    state, actions = step(None, start())
    assert state is not None
    assert state.phase is Phase.PENDING
    assert (state.scheduled_at, state.scheduled_by) == (AT, "c-start")
    assert (state.rollout_id, state.salt, state.percent) == ("r-sched", "salt-sched", 0.0)
    assert not any(isinstance(a, PublishFlagState) for a in actions)
    (recorded,) = actions
    assert isinstance(recorded, RecordDecision)
    assert (recorded.action, recorded.outcome, recorded.command_id) == (
        "schedule",
        "applied",
        "c-start",
    )
    assert recorded.evidence.schedule == ScheduleRecord(at=AT.isoformat())


@pytest.mark.parametrize(
    ("ticks", "fired"),
    [
        ([AT - timedelta(seconds=1)], False),
        ([AT], True),
        ([AT + timedelta(hours=5)], True),
        ([AT - timedelta(minutes=1), AT + timedelta(seconds=1)], True),
        ([AT, AT + timedelta(seconds=1), AT + timedelta(minutes=10)], True),
    ],
)
def test_the_first_tick_from_at_starts_it_once(ticks: list[datetime], fired: bool) -> None:
    state, decisions = run(scheduled(), *(TickInput(now) for now in ticks))
    assert state is not None
    starts = [d for d in decisions if d.action == "start"]
    assert len(starts) == int(fired)
    assert state.phase is (Phase.RUNNING if fired else Phase.PENDING)
    if fired:
        assert (state.rollout_id, state.salt, state.stage, state.percent) == (
            "r-sched",
            "salt-sched",
            0,
            10.0,
        )
        assert state.started_at == ticks[[t >= AT for t in ticks].index(True)]
        assert state.stage_flag_versions() == {state.flag_version}
        assert starts[0].evidence.schedule == ScheduleRecord(
            at=AT.isoformat(), command_id="c-start"
        )
        assert state.scheduled_at is None


def test_a_fired_start_publishes_the_flag_state() -> None:
    _, actions = step(scheduled(), TickInput(AT))
    assert isinstance(actions[0], PublishFlagState)


def test_a_scheduled_start_outside_the_windows_waits_for_one() -> None:
    weekend = {"kind": "deny", "name": "freeze", "from": T0.isoformat(), "to": "2026-11-24T00:00Z"}
    frozen = plan().model_copy(update={"windows": TypeAdapter(Windows).validate_python([weekend])})
    state, decisions = run(
        None,
        start(the_plan=frozen),
        TickInput(AT),
        TickInput(AT + timedelta(minutes=1)),
        TickInput(datetime(2026, 11, 24, 0, 1, tzinfo=UTC)),
    )
    assert state is not None
    assert [d.action for d in decisions] == ["schedule", "wait", "start"]
    assert state.phase is Phase.RUNNING


@pytest.mark.parametrize("action", [CommandAction.ABORT, CommandAction.KILL])
def test_a_cancelled_schedule_never_fires(action: CommandAction) -> None:
    cancelled, decisions = run(
        scheduled(),
        command(action, T0 + timedelta(minutes=1)),
        TickInput(AT),
        TickInput(AT + timedelta(days=1)),
    )
    assert cancelled is not None
    assert cancelled.phase is (Phase.ABORTED if action is CommandAction.ABORT else Phase.KILLED)
    assert [d.action for d in decisions] == [action.value]
    assert decisions[0].outcome == "applied"
    assert cancelled.percent == 0.0


def test_the_cancel_decision_names_the_schedule() -> None:
    _, decisions = run(scheduled(), command(CommandAction.ABORT, T0))
    assert decisions[0].reason == f"the start scheduled for {AT.isoformat()} is cancelled"
    assert decisions[0].evidence.schedule is not None
    assert decisions[0].evidence.schedule.command_id == "c-start"


@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        (CommandAction.PAUSE, "rejected"),
        (CommandAction.RESUME, "rejected"),
        (CommandAction.PROMOTE, "rejected"),
        (CommandAction.ROLLBACK, "rejected"),
        (CommandAction.APPROVE, "rejected"),
        (CommandAction.ABORT, "applied"),
        (CommandAction.KILL, "applied"),
    ],
)
def test_commands_on_a_pending_rollout_agree_with_applicable(
    action: CommandAction, outcome: str
) -> None:
    _, decisions = run(scheduled(), command(action, T0))
    assert decisions[0].outcome == outcome
    assert (outcome == "applied") == (action in applicable(Phase.PENDING))


def test_a_second_start_while_one_is_scheduled_is_rejected() -> None:
    state, decisions = run(scheduled(), start(at=None, command_id="c-again"))
    assert state is not None
    assert state.phase is Phase.PENDING
    assert decisions[0].outcome == "rejected"
    assert "abort it first" in decisions[0].reason


def test_a_schedule_over_a_completed_flag_is_rejected() -> None:
    to_end = CommandInput(
        action=CommandAction.PROMOTE,
        flag="checkout",
        command_id="c-p",
        actor="bo",
        now=T0,
        to_end=True,
    )
    done, _ = run(None, start(at=None), to_end)
    assert done is not None
    assert done.phase is Phase.COMPLETED
    state, decisions = run(done, start())
    assert state == done
    assert decisions[0].outcome == "rejected"


def test_a_start_at_now_or_before_starts_at_once() -> None:
    state, actions = step(None, start(at=T0 - timedelta(seconds=5)))
    assert state is not None
    assert state.phase is Phase.RUNNING
    assert isinstance(actions[0], PublishFlagState)


# -- a time box -----------------------------------------------------------------------

ENDS = T0 + timedelta(days=2)


def boxed(starts_at: datetime | None = None) -> Plan:
    return plan(time_box=TimeBox(starts_at=starts_at, ends_at=ENDS))


@pytest.mark.parametrize(
    "before",
    [
        [],
        [command(CommandAction.PAUSE, T0 + timedelta(hours=1))],
        [command(CommandAction.PROMOTE, T0 + timedelta(hours=1), "c-p1")],
    ],
)
def test_a_time_box_turns_the_flag_off_at_its_end_exactly_once(before: list[Input]) -> None:
    ticks = [
        ENDS - timedelta(seconds=1),
        ENDS,
        ENDS + timedelta(seconds=1),
        ENDS + timedelta(days=1),
    ]
    state, decisions = run(
        None, start(at=None, the_plan=boxed()), *before, *(TickInput(t) for t in ticks)
    )
    assert state is not None
    ends = [d for d in decisions if d.action == "time_box_end"]
    assert len(ends) == 1
    assert ends[0].kind == "transition"
    assert ends[0].reason == f"the time box ended at {ENDS.isoformat()}: the flag is off"
    assert ends[0].evidence.time_box == TimeBoxRecord(starts_at=None, ends_at=ENDS.isoformat())
    assert state.phase is Phase.ABORTED
    assert state.percent == 0.0
    assert state.updated_at == ENDS


def test_a_time_box_with_starts_at_is_a_scheduled_promotion() -> None:
    state, decisions = run(
        None,
        start(at=None, the_plan=boxed(starts_at=AT)),
        TickInput(AT),
        TickInput(ENDS),
    )
    assert [d.action for d in decisions] == ["schedule", "start", "time_box_end"]
    assert state is not None
    assert state.phase is Phase.ABORTED


def test_a_time_box_ending_before_a_waiting_start_drops_it() -> None:
    pending, _ = run(None, start(at=ENDS - timedelta(hours=1), the_plan=boxed()))
    state, decisions = run(pending, TickInput(ENDS))
    assert state is not None
    assert state.phase is Phase.ABORTED
    assert decisions[0].reason.endswith("before the scheduled start could fire")


@pytest.mark.parametrize(
    ("action", "phase"),
    [
        (CommandAction.ROLLBACK, Phase.ROLLED_BACK),
        (CommandAction.KILL, Phase.KILLED),
        (CommandAction.ABORT, Phase.ABORTED),
        (CommandAction.PAUSE, Phase.PAUSED),
    ],
)
def test_safety_works_on_a_time_boxed_flag_and_the_end_then_does_nothing(
    action: CommandAction, phase: Phase
) -> None:
    state, _ = run(
        None, start(at=None, the_plan=boxed()), command(action, T0 + timedelta(minutes=1))
    )
    assert state is not None
    assert state.phase is phase
    _, more = run(state, TickInput(ENDS))
    assert [d.action for d in more] == ([] if phase is not Phase.PAUSED else ["time_box_end"])


# -- admission: the bounds ------------------------------------------------------------


def wire(**fields: Any) -> Command:
    base = {"v": 1, "id": "c1", "ts": T0, "type": "command", "action": "start", "flag": "checkout"}
    base |= {"actor": "ana", "plan": {"stages": [{"percent": 100, "min_units_per_arm": 0}]}}
    return Command.model_validate(base | fields)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"at": (T0 + timedelta(days=1)).isoformat()}, None),
        ({"at": (T0 + timedelta(days=367)).isoformat()}, "more than 366 days ahead"),
        ({"at": (T0 - timedelta(minutes=30)).isoformat()}, "is in the past"),
        ({"at": (T0 - timedelta(seconds=30)).isoformat()}, None),
        ({"action": "pause", "plan": None, "at": AT.isoformat()}, "only start takes at"),
    ],
)
def test_at_is_bounded(fields: dict[str, Any], problem: str | None) -> None:
    cmd = wire(**fields, key_id="k", sig="x")
    found = scheduling.refusal(cmd.at, start=cmd.action is CommandAction.START, now=T0, max_age=300)
    assert (found is None) if problem is None else (problem in (found or ""))


@pytest.mark.parametrize(
    ("at", "box", "problem"),
    [
        (None, {"ends_at": "2026-11-25T00:00Z"}, None),
        (None, {"ends_at": "2026-11-23T07:00Z"}, "is not after the start"),
        (AT.isoformat(), {"ends_at": "2026-11-23T09:00Z"}, "is not after the start"),
        (
            AT.isoformat(),
            {"starts_at": "2026-11-23T11:00Z", "ends_at": "2026-11-25T00:00Z"},
            "different times",
        ),
        (None, {"ends_at": "2027-12-25T00:00Z"}, "more than 366 days ahead"),
    ],
)
def test_a_time_box_is_checked_at_admission(
    at: str | None, box: dict[str, Any], problem: str | None
) -> None:
    plan_data = {"stages": [{"percent": 100, "min_units_per_arm": 0}], "time_box": box}
    cmd = wire(plan=plan_data, **({"at": at} if at else {}))
    event = admitted(cmd, refused=None, now=T0, backends=frozenset(), rollout_id="r", salt="s")
    if problem is None:
        assert isinstance(event, CommandInput)
    else:
        assert isinstance(event, CommandRefused)
        assert problem in event.reason


@pytest.mark.parametrize(
    ("box", "field"),
    [
        ({"ends_at": "2026-11-25T00:00"}, "time_box.ends_at"),
        ({"starts_at": "2026-11-25T00:00Z", "ends_at": "2026-11-24T00:00Z"}, "time_box"),
        ({"ends_at": "2026-11-25T00:00Z", "until": "x"}, "time_box.until"),
        ({}, "time_box.ends_at"),
    ],
)
def test_a_bad_time_box_is_refused_with_the_field_named(box: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"{field}: "):
        parse_plan({"stages": [{"percent": 100, "min_units_per_arm": 0}], "time_box": box})


def test_the_command_at_is_refused_by_refusal_with_the_signature_checked_first() -> None:
    cmd = wire(at=AT.isoformat())
    assert refusal(cmd, {}, keys={}, now=T0, max_age_seconds=300) == "unsigned command"


def test_rolloutctl_builds_a_scheduled_start_and_refuses_at_elsewhere() -> None:
    built = sent_object(
        command_model("start", "checkout", actor="ana", key_id="k", plan=plan(), at=AT)
    )
    assert Command.model_validate(built).at == AT
    with pytest.raises(UsageError, match="--at goes with start, not abort"):
        command_model("abort", "checkout", actor="ana", key_id="k", at=AT)
