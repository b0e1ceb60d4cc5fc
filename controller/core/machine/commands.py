"""Records of the commands and monitors topics: bounded, parsed and authenticated.

A record over :data:`MAX_CONTROL_BYTES` is refused unread. A command must be
signed with a known operator key (Ed25519), be fresh (its timestamp within
``engine.command_max_age_seconds`` of now) and carry an id not applied before;
:func:`refusal` says which of the first checks failed. A command acts in an
environment (its own, or the default one: :func:`where`), under the flag's
key there (``checkout@staging``), and only where the key's roles allow its
action (:func:`role_refusal`). :func:`admitted`
turns the command into the machine's input: the command itself, or its
refusal (:class:`~controller.core.rollouts.rollout.CommandRefused`), which the machine
records as a rejected decision. What a command or a monitor alert then does
is the state machine's business.

What a start then meets in the state it finds: :func:`start_problem` is the check the
controller makes before any rollout starts (a start command's, a pipeline step's): its
prerequisites in its environment (an unknown flag, a cycle, a chain too deep, what
Unleash's dependent features cannot express) and its holdout's percent against every flag
naming it there; :func:`pipeline_refusal` and :func:`taken` are a pipeline start's checks
of its plans and of the flag being free. :class:`Trial` decides a set of commands one after
another on a copy of the rollouts held, as the intake would (the start checks, then
:func:`~controller.core.machine.machine.step`), each admitted one taken as applied so the
next meets it: ``POST /commands/check`` answers with it for ``rolloutctl apply``, which
sends a directory only when every object would be applied. Nothing is saved.

Pure: whether a command id was applied before is read by the caller, and the
ids a new rollout needs (its rollout id and salt) are drawn by the caller too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.core.common import ConfigError, as_datetime, scoped
from controller.core.machine import scheduling
from controller.core.machine.machine import step
from controller.core.release import (
    Environments,
    KeyRoles,
    Permission,
    Pipeline,
    action_of,
    may,
    window_problems,
)
from controller.core.rollouts import (
    CommandInput,
    CommandRefused,
    Plan,
    RecordDecision,
    Rollout,
    errors,
    lint,
    parse_plan,
)
from controller.core.serving import unleash_problems
from controller.core.trust import signing
from controller.core.wire import (
    Command,
    CommandAction,
    JsonObject,
    MonitorAlert,
    SegmentCommand,
    holdout_problems,
    start_problems,
)

MAX_CONTROL_BYTES = 256 * 1024
"""The largest command or monitor alert read; a plan fits in far less."""
REPLAYED = "replayed command id"
"""The refusal of a command whose id was applied before."""


def parse(
    value: bytes, *, alert: bool
) -> MonitorAlert | tuple[Command | SegmentCommand, JsonObject]:
    """The monitor alert (``alert``: a record of the monitors topic), or the command (a
    flag's, or a segment's) with its raw JSON (what its signature covers).

    Raises ``ValidationError``, ``orjson.JSONDecodeError`` or ``ValueError``
    for input that breaks the contract.
    """
    if alert:
        return MonitorAlert.model_validate_json(value)
    loaded = orjson.loads(value)
    if not isinstance(loaded, dict):
        raise ValueError("a command must be a JSON object")  # noqa: TRY004 - bad input
    raw: JsonObject = loaded
    if raw.get("type") == "segment_command":
        return SegmentCommand.model_validate(raw), raw
    return Command.model_validate(raw), raw


def refusal(
    command: Command,
    raw: Mapping[str, object],
    *,
    keys: Mapping[str, Ed25519PublicKey],
    now: datetime,
    max_age_seconds: float,
) -> str | None:
    """Why the command may not run (signature, key, freshness), or None."""
    unsigned = signature_refusal(
        raw, ts=command.ts, keys=keys, now=now, max_age_seconds=max_age_seconds
    )
    if unsigned is not None:
        return unsigned
    start = command.action is CommandAction.START
    return scheduling.refusal(command.at, start=start, now=now, max_age=max_age_seconds)


def signature_refusal(
    raw: Mapping[str, object],
    *,
    ts: float | datetime,
    keys: Mapping[str, Ed25519PublicKey],
    now: datetime,
    max_age_seconds: float,
) -> str | None:
    """Why a command (flag or segment: its raw JSON and its parsed ``ts``) is not a fresh
    one signed by a known operator key, or None."""
    key_id = raw.get("key_id")
    if raw.get("sig") is None or not isinstance(key_id, str):
        return "unsigned command"
    key = keys.get(key_id)
    if key is None:
        return f"unknown key id {key_id!r}"
    if not signing.verify(raw, key):
        return "bad signature"
    age = abs((now - as_datetime(ts)).total_seconds())
    if age > max_age_seconds:
        return f"stale command: {age:.0f}s from now, limit {max_age_seconds:.0f}s"
    return None


def where(command: Command, environments: Environments) -> tuple[str, str | None]:
    """The flag's key in the command's environment (``checkout@staging``; the flag's own in
    the default one), and why the command may not act there: an environment not served."""
    environment = environments.of(command.environment)
    unknown = environments.unknown(environment)
    if unknown is not None:
        return command.flag, f"environment: {unknown}"
    return scoped(command.flag, environment, environments.default), None


def role_refusal(command: Command, roles: KeyRoles, environments: Environments) -> str | None:
    """Why the key's roles do not allow the command's action in its environment, or None."""
    verdict = may(roles, action_of(command.action), environments.of(command.environment))
    return None if verdict else verdict.reason


def approving_roles(
    roles: KeyRoles, command: Command, environments: Environments
) -> tuple[str, ...]:
    """The roles of the key that may approve where the command acts: an ``approve`` counts
    under one of them for a stage that needs approvals by several people."""
    environment = environments.of(command.environment)
    return tuple(r.name for r in roles.roles if r.grants(Permission.APPROVE, environment))


def admitted(
    command: Command,
    *,
    refused: str | None,
    now: datetime,
    backends: frozenset[str],
    rollout_id: str,
    salt: str,
    flag: str | None = None,
    roles: tuple[str, ...] = (),
    holder: str = "",
) -> CommandInput | CommandRefused:
    """The machine's input for ``command``: its refusal when ``refused`` says why (see
    :func:`refusal`, or :data:`REPLAYED`) or its plan cannot work, else the command, with
    ``rollout_id`` and ``salt`` for the rollout a start begins; ``flag``: the flag's key in
    the command's environment (:func:`where`), the command's own by default; ``roles``: the
    key's roles that may approve there (:func:`approving_roles`); ``holder``: the person
    holding the key, for whom an ``approve`` counts (the key itself when empty).
    """
    flag = flag or command.flag
    if refused is not None:
        return refusal_input(command, refused, now, flag=flag)
    try:
        checked = None if command.plan is None else plan(command.plan, backends=backends, now=now)
    except ConfigError as exc:
        return refusal_input(command, str(exc), now, flag=flag)
    boxed = scheduling.plan_refusal(checked, command.at, now) if checked is not None else None
    if boxed is not None:
        return refusal_input(command, f"invalid plan: {boxed}", now, flag=flag)
    return command_input(
        command,
        checked,
        now,
        rollout_id=rollout_id,
        salt=salt,
        flag=flag,
        roles=roles,
        holder=holder,
    )


def refusal_input(
    command: Command, reason: str, now: datetime, *, flag: str | None = None
) -> CommandRefused:
    """The machine's input for a command refused with ``reason``."""
    return CommandRefused(
        action=command.action,
        flag=flag or command.flag,
        command_id=command.id,
        actor=command.actor,
        key_id=command.key_id,
        reason=reason,
        now=now,
    )


def command_input(
    command: Command,
    plan: Plan | None,
    now: datetime,
    *,
    rollout_id: str,
    salt: str,
    flag: str | None = None,
    roles: tuple[str, ...] = (),
    holder: str = "",
) -> CommandInput:
    """The machine's input for an authenticated command, with the ids of a new rollout."""
    return CommandInput(
        action=command.action,
        flag=flag or command.flag,
        command_id=command.id,
        actor=command.actor,
        key_id=command.key_id or "",
        now=now,
        reason=command.reason,
        applied=command.applied,
        plan=plan,
        to_end=command.to_end,
        at=command.at,
        new_rollout_id=rollout_id,
        new_salt=salt,
        roles=roles,
        holder=holder,
        expect_version=command.expect_version,
        expect_rollout_id=command.expect_rollout_id,
        expect_stage=command.expect_stage,
    )


def plan(data: Any, *, backends: frozenset[str], now: datetime) -> Plan:
    """A start command's plan; :class:`ConfigError` if invalid, if it cannot work as written
    at ``now`` (an error of :func:`~controller.core.rollouts.planlint.lint`: a stage that never
    completes, a guardrail never tested, a window that never opens again) or if it names a
    flag platform this controller is not connected to (a plan for Unleash without
    ``unleash.url``). Warnings do not refuse a plan.
    """
    parsed = parse_plan(data, source="plan")
    if wrong := errors(lint(parsed, now)):
        raise ConfigError("plan cannot work: " + "; ".join(map(str, wrong)))
    if parsed.unleash is not None and "unleash" not in backends:
        raise ConfigError(
            "invalid plan: backend.unleash: this controller has no Unleash (unleash.url is not set)"
        )
    return parsed


# -- what a start meets in the state it finds --------------------------------------------


def start_problem(flag: str, plan: Plan | None, plans: Mapping[str, Plan]) -> str | None:
    """Why starting the flag keyed ``flag`` (its key in its environment) with ``plan`` would
    break its environment's prerequisites or give its holdout another percent than a flag
    naming it there, given the plan of every rollout held (key -> plan), or None."""
    if plan is None or (not plan.requires and plan.holdout is None):
        return None
    if plan.requires:
        held = {key: list(each.requires or ()) for key, each in plans.items()}
        if problems := start_problems(flag, plan.requires, held):
            return "invalid plan: requires: " + "; ".join(problems)
        if problems := unleash_problems(flag, plan, plans):
            return "invalid plan: requires: " + "; ".join(problems)
    holdouts = {key: each.holdout for key, each in plans.items()}
    if problems := holdout_problems(flag, plan.holdout, holdouts):
        return "invalid plan: holdout: " + "; ".join(problems)
    return None


def pipeline_refusal(pipeline: Pipeline, now: datetime, backends: frozenset[str]) -> str | None:
    """Why an environment's plan cannot work as a start command's plan could not, or a
    step's release windows never open again, or None."""
    shut = window_problems(pipeline, now)
    if shut:
        return f"invalid pipeline: {'; '.join(shut)}"
    for i, environment in enumerate(pipeline.environments):
        each = pipeline.plan_for(environment).model_dump(mode="json")
        try:
            plan(each, backends=backends, now=now)
        except ConfigError as exc:
            return f"invalid pipeline: steps.{i} ({environment}): {exc}"
    return None


def taken(key: str, rollout: Rollout | None) -> str | None:
    """Why a pipeline may not start at ``key``: a rollout there still runs, or None."""
    if rollout is not None and rollout.phase.active:
        return f"{key} has a rollout {rollout.phase.value}: a pipeline starts its own"
    return None


@dataclass
class Trial:
    """The rollouts held (key -> rollout), and what the commands tried so far started."""

    rollouts: dict[str, Rollout]
    started: dict[str, Plan] = field(default_factory=dict)
    """Plans a pipeline tried so far starts, by key: they count for the next start."""

    def plans(self) -> dict[str, Plan]:
        return {key: r.plan for key, r in self.rollouts.items()} | self.started

    def command(self, event: CommandInput | CommandRefused) -> str | None:
        """Why the rollouts service would refuse ``event`` (the intake's input for a flag's
        command) on the state so far, or None: then it is taken as applied."""
        plan = event.plan if isinstance(event, CommandInput) else None
        if broken := start_problem(event.flag, plan, self.plans()):
            return broken
        held = self.rollouts.get(event.flag)
        new, actions = step(held, event)
        for action in actions:
            if isinstance(action, RecordDecision) and action.outcome == "rejected":
                return action.reason
        if new is not None:
            self.rollouts[event.flag] = new
            self.started.pop(event.flag, None)
        return None

    def pipeline(self, pipeline: Pipeline, keys: Mapping[str, str]) -> str | None:
        """Why ``pipeline`` may not start on the state so far (``keys``: its flag's key in
        each environment), or None: then each step's plan counts for the next start."""
        for environment in pipeline.environments:
            if busy := taken(keys[environment], self.rollouts.get(keys[environment])):
                return busy
        for environment in pipeline.environments:
            plan = pipeline.plan_for(environment)
            if broken := start_problem(keys[environment], plan, self.plans()):
                return f"{environment}: {broken}"
        for environment in pipeline.environments:
            self.started[keys[environment]] = pipeline.plan_for(environment)
        return None
