"""A gate's verdict acts only on the stage it was reached on: never twice across a move."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.adapters.memory import MemoryAggregates, MemoryStates
from controller.core.rollouts import GateInput, Verdict, VerdictKind
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import CommandInput
from controller.core.wire.messages import CommandAction
from tests.unit.daemon.rollouts.test_gate_batches import NOW, engine

PLAN = Plan(
    stages=[Stage(percent=p, min_duration=timedelta(0), min_units_per_arm=0) for p in (5, 25, 50)],
    guardrails=[Guardrail(metric="error_rate")],
)


def command(action: CommandAction, number: int) -> CommandInput:
    return CommandInput(
        action=action,
        flag="f",
        command_id=f"c{number}",
        actor="ana",
        now=NOW,
        plan=PLAN if action is CommandAction.START else None,
        new_rollout_id="r1",
        new_salt="s",
    )


@pytest.mark.parametrize(
    ("moved", "stage"),
    [
        (False, 1),  # the stage gated is still stored: the advance acts
        (True, 1),  # promoted meanwhile: the advance reached on stage 0 does not act again
    ],
)
async def test_an_advance_reached_on_a_stage_since_moved_does_not_act(
    moved: bool, stage: int
) -> None:
    states = MemoryStates()
    eng = engine(states, MemoryAggregates())
    await eng.rollouts.apply("f", command(CommandAction.START, 1))
    seen = states.docs["f"][1]
    assert seen.stage == 0
    if moved:
        await eng.rollouts.apply("f", command(CommandAction.PROMOTE, 2))
        assert states.docs["f"][1].stage == 1
    advance = GateInput(Verdict(VerdictKind.ADVANCE, "guardrails hold"), NOW)
    await eng.rollouts.offer("f", seen, advance)
    assert states.docs["f"][1].stage == stage
