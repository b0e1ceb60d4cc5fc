"""Every flag a lost store took, rebuilt at its last decision from what the topics say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from controller.core.drafting import Rebuild, RestoreRefusal, TopicHistory
from controller.core.machine.machine import step
from controller.core.rollouts import CommandInput, Plan, PublishFlagState
from controller.core.rollouts.plan_parts import Stage
from controller.core.wire import CommandAction

PLAN = Plan(stages=[Stage(percent=p, min_duration=timedelta(hours=1)) for p in (1, 5, 25, 100)])


def start_command(command_id: str) -> bytes:
    plan = PLAN.model_dump(mode="json")
    return orjson.dumps({"type": "command", "id": command_id, "action": "start", "plan": plan})


def decision(
    action: str, phase: str | None, stage: int | None, *, cid: str = "c1", n: int = 0
) -> bytes:
    return orjson.dumps(
        {
            "type": "decision",
            "id": f"d{n}",
            "flag": "checkout",
            "rollout_id": "r1",
            "kind": "command",
            "action": action,
            "outcome": "applied",
            "phase_after": phase,
            "stage": stage,
            "command_id": cid,
        }
    )


def state(salt: str) -> bytes:
    return orjson.dumps(
        {"type": "flag_state", "flag": "checkout", "rollout_id": "r1", "salt": salt, "version": 3}
    )


def history(*decisions: bytes, commands: tuple[bytes, ...] = ()) -> TopicHistory:
    read = TopicHistory()
    for command in commands:
        read.take_command(command)
    for each in decisions:
        read.take_decision(each)
    read.take_flag_state(state("salt-1"))
    return read


STARTED = decision("start", "running", 0, n=1)


@pytest.mark.parametrize(
    ("decisions", "steps", "stage"),
    [
        # at its third stage: started again there (the promotes to it, as restore has them)
        (
            [STARTED, decision("promote", "running", 1, n=2), decision("promote", "running", 2)],
            ["start", "promote", "promote"],
            2,
        ),
        ([STARTED], ["start"], 0),
        # paused: started, promoted and paused again
        (
            [STARTED, decision("promote", "running", 1, n=2), decision("pause", "paused", 1)],
            ["start", "promote", "pause"],
            1,
        ),
        # completed: started and promoted to the end
        ([STARTED, decision("promote", "completed", 3, n=2)], ["start", "promote"], 3),
        # a decision that records no state (a refusal of a stale command) is not the last
        ([STARTED, decision("promote", None, None, n=2)], ["start"], 0),
    ],
)
def test_a_flag_is_rebuilt_at_its_last_decision(
    decisions: list[bytes], steps: list[str], stage: int
) -> None:
    rebuild = history(*decisions, commands=(start_command("c1"),)).rebuild("checkout")
    assert isinstance(rebuild, Rebuild), rebuild
    assert [s.action for s in rebuild.plan.steps] == steps
    assert rebuild.then.stage == stage
    assert (rebuild.rollout_id, rebuild.salt, rebuild.start_command) == ("r1", "salt-1", "c1")
    assert rebuild.then.plan == PLAN


@pytest.mark.parametrize(
    ("decisions", "commands", "why"),
    [
        ([STARTED, decision("kill", "killed", 0, n=2)], (start_command("c1"),), "was killed"),
        ([STARTED, decision("rollback", "rolled_back", 0)], (start_command("c1"),), "rolled_back"),
        ([STARTED], (), "its plan is not known"),  # the start command is past retention
        ([], (start_command("c1"),), "no decision of checkout"),
    ],
)
def test_a_flag_that_cannot_be_rebuilt_says_why(
    decisions: list[bytes], commands: tuple[bytes, ...], why: str
) -> None:
    refused = history(*decisions, commands=commands).rebuild("checkout")
    assert isinstance(refused, RestoreRefusal)
    assert why in refused.reason


def test_records_it_cannot_read_are_skipped() -> None:
    read = TopicHistory()
    for junk in (b"", b"not json", b"[1]", orjson.dumps({"type": "decision"})):
        read.take_decision(junk)
        read.take_command(junk)
        read.take_flag_state(junk)
    assert list(read.flags()) == []
    assert read.salts == {}
    assert read.plans == {}


@pytest.mark.parametrize(("asked", "stage"), [(0, 0), (2, 2), (3, 3), (9, 3)])
def test_a_rebuilt_start_begins_at_its_stage_with_one_flag_state(asked: int, stage: int) -> None:
    now = datetime(2026, 11, 28, 21, tzinfo=UTC)
    command = CommandInput(
        action=CommandAction.START,
        flag="checkout",
        command_id="c1",
        actor="controller",
        now=now,
        plan=PLAN,
        new_rollout_id="r1",
        new_salt="salt-1",
        version_floor=7,
        start_stage=asked,
    )
    rollout, actions = step(None, command)
    assert rollout is not None
    assert (rollout.stage, rollout.stage_started_at, rollout.salt) == (stage, now, "salt-1")
    assert rollout.stage_versions == {stage: [8]}
    assert rollout.percent == PLAN.stages[stage].percent
    assert sum(isinstance(a, PublishFlagState) for a in actions) == 1
