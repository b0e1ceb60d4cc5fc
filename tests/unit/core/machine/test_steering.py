"""What a rollout keeps of the commands people changed its course with while it ran (pure).

A promote that leaves it running, a pause and a resume are kept (``steered``) with who
sent them, when, why and at which stage; a command refused or rejected, one that
finished the rollout (kept as ``ended`` instead) and the gate's own moves are not.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from controller.core.machine.machine import step
from controller.core.machine.transitions import MAX_STEERED
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.wire.messages import CommandAction
from tests.unit.core.machine.test_machine import INPUTS, NOW, STATES, cmd

KEPT = {
    ("running", "promote"): ("promote", "stage 2/3 (50%)"),
    ("running-approval", "promote"): ("promote", "stage 2/3 (50%)"),
    ("paused-operator", "promote"): ("promote", "stage 2/3 (50%)"),
    ("paused-srm", "promote"): ("promote", "stage 2/3 (50%)"),
    ("paused-approval", "promote"): ("promote", "stage 2/3 (50%)"),
    ("running", "pause"): ("pause", "stage 2/3 (50%)"),
    ("running-approval", "pause"): ("pause", "stage 2/3 (50%)"),
    ("running-last", "pause"): ("pause", "stage 3/3 (100%)"),
    ("paused-operator", "resume"): ("resume", "stage 2/3 (50%)"),
    ("paused-srm", "resume"): ("resume", "stage 2/3 (50%)"),
}
"""(state, input) -> the kept command's action and the stage it was sent at; every other
pair keeps nothing."""


@pytest.mark.parametrize("state_key", sorted(k for k in STATES if STATES[k] is not None))
@pytest.mark.parametrize("input_key", sorted(INPUTS))
def test_only_a_persons_move_that_leaves_it_running_is_kept(state_key: str, input_key: str) -> None:
    state = STATES[state_key]
    new, _ = step(state, INPUTS[input_key])
    kept = new.steered if new is not None and new.rollout_id == "r1" else []
    want = KEPT.get((state_key, input_key))
    assert [(k.action, k.evidence.at_stage and k.evidence.at_stage.label) for k in kept] == (
        [want] if want else []
    )
    for move in kept:
        assert (move.at, move.evidence.actor, move.kind) == (NOW, "ana", "command")


def test_the_reason_is_the_persons_own_and_the_last_few_are_kept_oldest_first() -> None:
    state: Rollout | None = STATES["running"]
    for turn in range(MAX_STEERED + 2):
        action = CommandAction.PAUSE if turn % 2 == 0 else CommandAction.RESUME
        at = NOW + timedelta(minutes=turn)
        move = replace(cmd(action, reason=f"turn {turn}"), command_id=f"c{turn}", now=at)
        state, _ = step(state, move)
    assert state is not None
    assert state.phase is Phase.RUNNING
    reasons = [k.reason for k in state.steered]
    assert reasons == [f"turn {t}" for t in range(2, MAX_STEERED + 2)]
    assert state.steered[-1].at == NOW + timedelta(minutes=MAX_STEERED + 1)
    # a new rollout starts with none
    again, _ = step(state, cmd(CommandAction.KILL))
    assert again is not None
    assert again.ended is not None
    assert len(again.steered) == MAX_STEERED
    started, _ = step(again, cmd(CommandAction.START, plan=again.plan))
    assert started is not None
    assert (started.rollout_id, started.steered) == ("r2", [])
