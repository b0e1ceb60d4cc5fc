"""Proposals: the unsigned commands the MCP server hands a person, and how to sign them.

A proposal is the command ``rolloutctl`` would sign, built as the contract's model
(:func:`~controller.ctl.operate.command_model`) and handed on as the object it would be
sent as, made against the flag as the controller serves it now: it names the flag version,
rollout and stage it read (``expect_version``, ``expect_rollout_id``,
``expect_stage``), so the controller rejects it as stale once the flag has
moved on. It carries no key id and no signature; the person who signs it makes
it theirs (:mod:`controller.ctl.operate.proposals`). Starts are checked as
``rolloutctl start`` checks a plan, so a proposal that cannot work is refused
here rather than handed on.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from controller.core.common import ConfigError, ControllerError
from controller.core.reading import RolloutStatus
from controller.core.rollouts import Plan, errors, lint, load_plan
from controller.core.wire import Command, CommandAction, JsonObject, sent_object
from controller.ctl.operate import command_model

PROPOSER = "proposal via rolloutctl mcp"
"""The proposal's actor until a person signs it and it becomes theirs."""
MAX_PLAN_CHARS = 64 * 1024
"""A plan's YAML as an agent may give it: a command's plan holds at most 64 KiB of JSON."""
NOTHING_APPLIED = (
    "Nothing was applied: this is an unsigned proposal. It acts only once a person with an "
    "operator key signs and sends it, and the controller rejects it as stale if the flag has "
    "changed since it was made."
)


class MadeAgainst(BaseModel):
    """What the controller served for the flag when the proposal was made."""

    model_config = ConfigDict(frozen=True)

    flag: str = Field(description="The flag's key (with its environment, if any).")
    flag_version: int = Field(description="0: the flag had no rollout.")
    rollout_id: str | None
    stage: int | None = Field(description="From 0.")
    phase: str | None


SentCommand = Annotated[
    Command,
    PlainSerializer(sent_object, return_type=JsonObject),
    WithJsonSchema({"additionalProperties": True, "title": "Command", "type": "object"}),
]
"""A command handed on as the JSON object it is sent and signed as
(:func:`~controller.core.wire.sent_object`), and described as any JSON object."""


class Proposal(BaseModel):
    """An unsigned command for a person to review, sign and send."""

    model_config = ConfigDict(frozen=True)

    command: SentCommand = Field(
        description="The unsigned command, exactly as `rolloutctl sign --file` takes it."
    )
    made_against: MadeAgainst
    file: str = Field(description="A name to save the command under.")
    sign_and_send: str = Field(description="The one command line a person runs on the file.")
    sign_and_send_inline: str = Field(description="The same, with the command in a heredoc.")
    note: str = NOTHING_APPLIED


def made_against(flag: str, status: RolloutStatus | None) -> MadeAgainst:
    if status is None:
        return MadeAgainst(flag=flag, flag_version=0, rollout_id=None, stage=None, phase=None)
    return MadeAgainst(
        flag=status.flag,
        flag_version=status.flag_version,
        rollout_id=status.rollout_id,
        stage=status.stage,
        phase=status.phase,
    )


def propose(
    action: CommandAction,
    flag: str,
    against: MadeAgainst,
    *,
    reason: str,
    environment: str | None = None,
    plan: Plan | None = None,
    to_end: bool = False,
) -> Proposal:
    """The proposal of ``action`` on ``flag``, with its preconditions and the lines to run."""
    at_stage = against.rollout_id is not None and against.stage is not None
    command = command_model(
        action,
        flag,
        actor=PROPOSER,
        key_id=None,
        reason=reason,
        plan=plan,
        to_end=to_end,
        environment=environment,
        expect_version=against.flag_version,
        expect_rollout_id=against.rollout_id if at_stage else None,
        expect_stage=against.stage if at_stage else None,
    )
    name = f"proposal-{action.value}-{flag}-{command.id[:8]}.json"
    text = orjson.dumps(sent_object(command)).decode()
    line = f"rolloutctl send --sign --wait --file {shlex.quote(name)}"
    inline = f"rolloutctl send --sign --wait --file - <<'EOF'\n{text}\nEOF"
    return Proposal(
        command=command,
        made_against=against,
        file=name,
        sign_and_send=line,
        sign_and_send_inline=inline,
    )


def plan_of(text: str) -> Plan:
    """A proposed start's plan, from YAML; refused when it cannot work as written now."""
    if len(text) > MAX_PLAN_CHARS:
        raise ControllerError(f"plan: over {MAX_PLAN_CHARS} characters")
    try:
        plan = load_plan(text, source="plan", name="proposed")
    except ConfigError as exc:
        raise ControllerError(str(exc)) from exc
    if wrong := errors(lint(plan, datetime.now(UTC))):
        raise ControllerError("plan cannot work: " + "; ".join(map(str, wrong)))
    return plan
