"""``rolloutctl mcp`` holds no key; its proposals are unsigned commands with preconditions."""

from __future__ import annotations

import shlex
from pathlib import Path

import orjson
import pytest
from mcp import Client

from controller.core.common import ControllerError
from controller.core.reading import RolloutStatus
from controller.core.wire import Command, CommandAction, sent_object
from controller.ctl.agent import drafts, proposing, tools
from controller.ctl.agent.reading import Hold, Reader, hold_of, key_of
from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG
from controller.settings import KafkaSettings, TopicSettings

SEEN = proposing.MadeAgainst(
    flag="checkout", flag_version=7, rollout_id="r-1", stage=2, phase="running"
)
NEVER = proposing.made_against("checkout", None)


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (["mcp", "--key", "ops.key"], {}, "drop --key"),
        (["mcp"], {"ROLLOUTCTL_KEY": "/home/ops/.config/rolloutctl/ops.key"}, "unset"),
        (["mcp"], {"RC_SIGNING__KEY": "a2V5"}, "signing.key"),
    ],
)
def test_the_server_refuses_to_start_with_a_key(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    env: dict[str, str],
    said: str,
) -> None:
    monkeypatch.delenv("ROLLOUTCTL_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "rolloutctl mcp holds no key" in err
    assert said in err


@pytest.mark.parametrize(
    ("action", "against", "expected"),
    [
        (CommandAction.PAUSE, SEEN, {"expect_version": 7, "expect_rollout_id": "r-1"}),
        (CommandAction.KILL, SEEN, {"expect_stage": 2}),
        (CommandAction.PROMOTE, SEEN, {"expect_version": 7, "to_end": False}),
        (CommandAction.KILL, NEVER, {"expect_version": 0}),
    ],
)
def test_a_proposal_is_an_unsigned_command_made_against_what_was_read(
    action: CommandAction, against: proposing.MadeAgainst, expected: dict[str, object]
) -> None:
    made = proposing.propose(action, "checkout", against, reason="why")
    command = sent_object(made.command)
    assert made.model_dump(mode="json")["command"] == command  # what the tool returns
    Command.model_validate(command)
    assert expected.items() <= command.items()
    assert "sig" not in command
    assert "key_id" not in command
    if against.rollout_id is None:
        assert "expect_rollout_id" not in command
        assert "expect_stage" not in command
    assert shlex.split(made.sign_and_send)[-1] == made.file
    heredoc = made.sign_and_send_inline.splitlines()
    assert orjson.loads(heredoc[1]) == command
    assert heredoc[-1] == "EOF"
    assert "Nothing was applied" in made.note


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("stages: [", "plan"),
        ("stages:\n  - {percent: 200}\n", "percent"),
        ("x" * (proposing.MAX_PLAN_CHARS + 1), "over"),
    ],
)
def test_a_proposed_start_with_a_plan_that_cannot_work_is_refused(text: str, said: str) -> None:
    with pytest.raises(ControllerError, match=said):
        proposing.plan_of(text)


@pytest.mark.parametrize(
    ("flag", "environment", "key"),
    [("checkout", None, "checkout"), ("checkout", "staging", "checkout@staging")],
)
def test_a_flag_and_environment_name_the_key_read(
    flag: str, environment: str | None, key: str
) -> None:
    assert key_of(flag, environment) == key


@pytest.mark.parametrize(
    ("flag", "environment"), [("../admin", None), ("a" * 129, None), ("checkout", "Prod/../x")]
)
def test_a_hostile_flag_or_environment_is_refused_before_any_read(
    flag: str, environment: str | None
) -> None:
    with pytest.raises(ControllerError):
        key_of(flag, environment)


def status(**fields: object) -> RolloutStatus:
    base: dict[str, object] = {
        "flag": "checkout",
        "rollout_id": "r-1",
        "plan": "p",
        "phase": "running",
        "stage": 0,
        "stages": 2,
        "percent": 1.0,
        "flag_version": 3,
        "time_in_stage_s": 5.0,
        "min_duration_s": 60.0,
        "min_units_per_arm": 10,
        "verdict": "advance",
        "verdict_reason": "healthy",
    }
    return RolloutStatus.model_validate(base | fields)


@pytest.mark.parametrize(
    ("fields", "moving", "reason"),
    [
        ({}, True, None),
        ({"phase": "paused", "pause_reason": "operator"}, False, "paused: operator"),
        ({"verdict": "hold", "verdict_reason": "too few units"}, False, "too few units"),
        ({"next_move": {"why": "waiting for the window"}}, False, "waiting for the window"),
        ({"verdict": None, "phase": "rolled_back", "verdict_reason": "p99"}, False, "p99"),
    ],
)
def test_why_a_rollout_holds_in_the_controllers_words(
    fields: dict[str, object], moving: bool, reason: str | None
) -> None:
    hold = hold_of(status(**fields))
    assert hold.moving is moving
    if reason is not None:
        assert any(reason in line for line in hold.reasons)


async def test_a_tool_that_cannot_read_tells_the_agent_why() -> None:
    reader = Reader("http://127.0.0.1:1", KafkaSettings(), TopicSettings(), timeout_s=2)
    async with Client(tools.build(reader)) as client:
        answer = await client.call_tool("rollout_status", {"flag": "checkout"})
        hostile = await client.call_tool("propose_kill", {"flag": "a/b", "reason": "x"})
    assert answer.is_error
    assert "cannot reach the controller at http://127.0.0.1:1" in str(answer.content)
    assert hostile.is_error
    assert "a flag's own key is 1 to 128" in str(hostile.content)


@pytest.mark.parametrize(
    ("rings", "said"),
    [
        ([], "1 to 20"),
        ([("country in [", 5)], "not a rule"),
        ([("everyone", 50), ("everyone", 10)], "ring"),
    ],
)
def test_rings_that_make_no_plan_are_refused_with_the_reason(
    rings: list[tuple[str, float]], said: str
) -> None:
    with pytest.raises(ControllerError, match=said):
        drafts.rings_draft([drafts.Ring(audience=a, percent=p) for a, p in rings])


def test_rings_become_a_plan_that_proposing_a_start_reads_back() -> None:
    rings = [drafts.Ring(audience='country in ["DE"]', percent=50)]
    drafted = drafts.rings_draft([*rings, drafts.Ring(audience="everyone", percent=100)])
    assert drafted.usable
    plan = proposing.plan_of(drafted.plan_yaml)
    assert [s.percent for s in plan.stages] == [50, 100]


@pytest.mark.parametrize(
    ("rule", "usable"),
    [('country in ["DE"]', True), ('country == "DE" and country == "FR"', False)],
)
def test_a_drafted_rule_says_whether_it_can_be_used(rule: str, usable: bool) -> None:
    assert drafts.rule_draft(rule).usable is usable


def test_why_holding_says_what_the_stage_still_needs() -> None:
    needs = {
        "min_time_left_s": 150.0, "units": None, "partitions": None, "untested": [],
        "empty_ring": 'country in ["NZ"]', "to_detect": None,
        "lines": ['no units seen in this ring (country in ["NZ"]): check ...',
                  "minimum stage time: 2 min 30 s left"],
    }  # fmt: skip
    hold = hold_of(status(verdict="hold", verdict_reason="minimum stage time", needs=needs))
    assert hold.moving is False
    assert hold.needs == needs["lines"]
    assert hold_of(status()).needs == []
    assert "needs" in Hold.model_json_schema()["properties"]  # what the tool's schema says


class _Served(Reader):
    """A reader whose controller serves one rollout, waiting on its stage's minimums."""

    def status(self, flag: str, environment: str | None = None) -> RolloutStatus | None:
        needs = {
            "min_time_left_s": 150.0, "units": None, "partitions": None, "untested": [],
            "empty_ring": None, "to_detect": None,
            "lines": ["minimum stage time: 2 min 30 s left"],
        }  # fmt: skip
        return status(verdict="hold", verdict_reason="minimum stage time", needs=needs)


async def test_the_read_tools_tell_the_agent_what_the_stage_still_needs() -> None:
    reader = _Served("http://127.0.0.1:1", KafkaSettings(), TopicSettings(), timeout_s=2)
    async with Client(tools.build(reader)) as client:
        held = await client.call_tool("why_holding", {"flag": "checkout"})
        served = await client.call_tool("rollout_status", {"flag": "checkout"})
    assert not held.is_error, held.content
    assert held.structured_content["needs"] == ["minimum stage time: 2 min 30 s left"]
    assert not served.is_error, served.content
    assert served.structured_content["needs"]["min_time_left_s"] == 150.0
