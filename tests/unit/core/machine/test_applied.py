"""The digest ``rolloutctl apply`` sends with a start is kept with the rollout it starts:
at once, through a scheduled start, and after a restart (the state read back from JSON)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from controller.core.machine.commands import command_input
from controller.core.rollouts.rollout import CommandInput, Phase, TickInput
from controller.core.wire import sent_object
from controller.core.wire.messages import Command
from controller.ctl.operate.commands import command_model
from tests.unit.core.machine.test_scheduling import AT, T0, plan, run, start

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("at", "applied", "phase"),
    [
        (None, DIGEST, Phase.RUNNING),
        (None, None, Phase.RUNNING),
        (AT, DIGEST, Phase.RUNNING),  # scheduled, then fired by the tick at AT
        (AT, None, Phase.RUNNING),
    ],
)
def test_a_start_keeps_the_digest_it_carried(at: object, applied: str | None, phase: Phase) -> None:
    started: CommandInput = replace(start(at=at), applied=applied)  # type: ignore[arg-type]
    state, _ = run(None, started, TickInput(AT + timedelta(seconds=1)))
    assert state is not None
    assert (state.phase, state.applied) == (phase, applied)


@pytest.mark.parametrize("applied", [DIGEST, None])
def test_the_command_hands_its_digest_to_the_machine(applied: str | None) -> None:
    raw = sent_object(
        command_model("start", "checkout", actor="ci", key_id="ci", plan=plan(), ts_ms=0)
    )
    if applied is not None:
        raw["applied"] = applied
    command = Command.model_validate(raw)
    made = command_input(command, plan(), T0, rollout_id="r", salt="s")
    assert made.applied == applied


@pytest.mark.parametrize("wrong", ["AB" * 32, "ab" * 31, "not a digest"])
def test_a_digest_that_is_no_sha256_breaks_the_contract(wrong: str) -> None:
    raw = sent_object(
        command_model("start", "checkout", actor="ci", key_id="ci", plan=plan(), ts_ms=0)
    )
    with pytest.raises(ValueError, match="applied"):
        Command.model_validate(raw | {"applied": wrong})
