"""A command made against a flag's version, rollout and stage is refused once the flag moved on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core.machine.commands import command_input
from controller.core.machine.machine import step
from controller.core.rollouts.actions import RecordDecision
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.core.rollouts.rollout import CommandInput, Phase, Rollout
from controller.core.wire.messages import Command, CommandAction

T0 = datetime(2026, 11, 23, 8, tzinfo=UTC)
PLAN = Plan(stages=[Stage(percent=5, min_duration=timedelta(hours=1)), Stage(percent=100)])


def running(version: int = 3, stage: int = 0, rollout_id: str = "r-1") -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id=rollout_id,
        plan=PLAN,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=T0,
        salt="s",
        flag_version=version,
        stage_versions={stage: [version]},
        started_at=T0,
        updated_at=T0,
    )


def made(
    action: CommandAction,
    version: int | None = None,
    rollout_id: str | None = None,
    stage: int | None = None,
) -> CommandInput:
    return CommandInput(
        action=action,
        flag="checkout",
        command_id="c-1",
        actor="ana",
        now=T0,
        plan=PLAN if action is CommandAction.START else None,
        new_rollout_id="r-2",
        new_salt="s2",
        expect_version=version,
        expect_rollout_id=rollout_id,
        expect_stage=stage,
    )


def decided(state: Rollout | None, cmd: CommandInput) -> tuple[Rollout | None, RecordDecision]:
    new, actions = step(state, cmd)
    [decision] = [a for a in actions if isinstance(a, RecordDecision)]
    return new, decision


@pytest.mark.parametrize(
    ("state", "cmd", "outcome", "reason"),
    [
        (running(), made(CommandAction.PAUSE), "applied", ""),
        (running(), made(CommandAction.PAUSE, 3, "r-1", 0), "applied", ""),
        (running(), made(CommandAction.KILL, 3), "applied", ""),
        (None, made(CommandAction.START, 0), "applied", ""),
        (running(4), made(CommandAction.PAUSE, 3), "rejected", "flag version 3, the flag is at 4"),
        (running(4), made(CommandAction.KILL, 3), "rejected", "flag version 3, the flag is at 4"),
        (running(), made(CommandAction.PROMOTE, 3, "r-0"), "rejected", "the flag has rollout r-1"),
        (running(stage=1), made(CommandAction.PAUSE, 3, "r-1", 0), "rejected", "at stage 2"),
        (None, made(CommandAction.START, 2), "rejected", "the flag is at 0"),
        (None, made(CommandAction.KILL, None, "r-1"), "rejected", "the flag has no rollout"),
        (running(), made(CommandAction.START, 0), "rejected", "the flag is at 3"),
    ],
)
def test_a_precondition_holds_or_refuses_the_command_alone(
    state: Rollout | None, cmd: CommandInput, outcome: str, reason: str
) -> None:
    new, decision = decided(state, cmd)
    assert decision.outcome == outcome
    assert reason in decision.reason
    if outcome == "rejected":
        assert decision.reason.startswith("stale: ")
        assert new == state  # refused: nothing about the flag changed


def test_the_wire_command_carries_its_preconditions_to_the_machine() -> None:
    wire = Command.model_validate(
        {
            "type": "command",
            "v": 1,
            "id": "c-1",
            "ts": 1,
            "action": "pause",
            "flag": "checkout",
            "actor": "ana",
            "expect_version": 7,
            "expect_rollout_id": "r-1",
            "expect_stage": 2,
        }
    )
    cmd = command_input(wire, None, T0, rollout_id="", salt="")
    assert (cmd.expect_version, cmd.expect_rollout_id, cmd.expect_stage) == (7, "r-1", 2)


@pytest.mark.parametrize(
    "bad", [{"expect_version": -1}, {"expect_version": 2**31}, {"expect_stage": True}]
)
def test_a_precondition_out_of_bounds_breaks_the_contract(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="expect_"):
        Command.model_validate(
            {"type": "command", "v": 1, "id": "c", "ts": 1, "action": "kill", "flag": "f"}
            | {"actor": "a"}
            | bad
        )
