"""Whether the command intake would admit each of a set of signed commands now, deciding none.

``POST /commands/check`` answers it for ``rolloutctl apply``, which sends a directory's
commands only when every one would be admitted: a key whose roles allow part of the set
sends nothing. Each command is checked as the command intake
(:mod:`controller.daemon.rollouts.commands`) checks it on arrival, with the same
functions and the keys in use now: a rollout's command (a known key, its signature,
fresh, its environment served, a time it may run at, the key's roles allow the action
there), a pipeline's start (signed, the pipeline parses, the key may start in each of
its environments), a segment's or an app key's (signed, fresh, a role granted in every
environment). Nothing is recorded: a command checked is not seen, so sending it after
is no replay.

Given the rollouts held (a :class:`~controller.core.machine.Trial`), each rollout's and
pipeline's command is then decided on them as the rollouts service would decide it (the
start checks: prerequisites, holdouts, every plan working, the flag free; then the state
machine), in the set's order, each admitted one taken as applied for the ones after it.

It is synchronous, with no I/O: one check reads one set of keys, even across a reload.
What it cannot foresee is what a command meets when it is applied (the flag's state then,
keys reloaded in between, Unleash's environments), said in docs/gitops.md.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import orjson
from pydantic import ValidationError

from controller.core.common import ConfigError, scoped
from controller.core.machine import MAX_CONTROL_BYTES, Trial, commands, pipeline_refusal
from controller.core.reading import CheckedCommand
from controller.core.release import (
    Permission,
    Pipeline,
    PipelineCommand,
    may,
    parse_pipeline,
    pipeline_command,
)
from controller.core.rollouts import CommandRefused, Window
from controller.core.trust import app_keys
from controller.core.wire import Command, JsonObject, SegmentCommand, summarize
from controller.daemon.registries.keyring import Keyring, shared_refusal

NOT_APPLY_COMMAND = "only rollout, pipeline, segment and app-key commands are checked"


@dataclass(frozen=True)
class Held:
    """What the commands meet besides the keys: the rollouts held (tried on, never saved),
    the flag platforms a plan may name, the team's release windows."""

    trial: Trial
    backends: frozenset[str] = frozenset()
    team_windows: tuple[Window, ...] = ()


@dataclass(frozen=True)
class _Asked:
    keys: Keyring
    now: datetime
    max_age_seconds: float
    held: Held | None


def check_commands(
    values: Sequence[bytes],
    *,
    keys: Keyring,
    now: datetime,
    max_age_seconds: float,
    held: Held | None = None,
) -> list[CheckedCommand]:
    """Each command's answer, in order (``values``: each as it would be sent); with
    ``held``, a rollout's or pipeline's command is also decided on the rollouts held, each
    admitted one taken as applied."""
    asked = _Asked(keys, now, max_age_seconds, held)
    return [_one(index, value, asked) for index, value in enumerate(values)]


def _one(index: int, value: bytes, asked: _Asked) -> CheckedCommand:
    if len(value) > MAX_CONTROL_BYTES:  # the intake dead-letters it unread
        why = f"oversize: {len(value)} bytes > {MAX_CONTROL_BYTES}"
        return CheckedCommand(index=index, id=None, allowed=False, reason=why)
    try:
        refused, command_id = _refusal(value, asked)
    except (ValidationError, orjson.JSONDecodeError, ValueError) as exc:
        detail = summarize(exc) if isinstance(exc, ValidationError) else str(exc)
        return CheckedCommand(
            index=index, id=_id_of(value), allowed=False, reason=f"schema: {detail}"[:500]
        )
    return CheckedCommand(
        index=index, id=command_id, allowed=refused is None, reason=(refused or "")[:500]
    )


def _refusal(value: bytes, asked: _Asked) -> tuple[str | None, str | None]:
    """Why the command in ``value`` would be refused now (None: it would be admitted), and
    its id; raises as the intake's parsing does for one that breaks the contract."""
    keys, now, max_age_seconds = asked.keys, asked.now, asked.max_age_seconds
    app_key = app_keys.parsed(value)
    if app_key is not None:
        command, raw = app_key
        refused = app_keys.refusal(
            command, raw, keys=keys, now=now, max_age_seconds=max_age_seconds
        ) or shared_refusal(keys, command.key_id, Permission.MANAGE_KEYS)
        if refused is None and command.environment is not None:
            unknown = keys.environments.unknown(command.environment)
            refused = None if unknown is None else f"environment: {unknown}"
        return refused, command.id
    run = pipeline_command(value)
    if run is not None:
        started, raw = run
        return _pipeline_refusal(started, raw, asked), started.id
    parsed = commands.parse(value, alert=False)
    if isinstance(parsed, tuple) and isinstance(parsed[0], SegmentCommand):
        segment, raw = parsed
        signed = commands.signature_refusal(
            raw, ts=segment.ts, keys=keys, now=now, max_age_seconds=max_age_seconds
        )
        return signed or shared_refusal(keys, raw.get("key_id"), Permission.MANAGE_SEGMENTS), (
            segment.id
        )
    if isinstance(parsed, tuple) and isinstance(parsed[0], Command):
        flag_command, raw = parsed[0], parsed[1]
        return _rollout_refusal(flag_command, raw, asked), flag_command.id
    return NOT_APPLY_COMMAND, None


def _pipeline_refusal(command: PipelineCommand, raw: JsonObject, asked: _Asked) -> str | None:
    keys = asked.keys
    signed = commands.signature_refusal(
        raw, ts=command.ts, keys=keys, now=asked.now, max_age_seconds=asked.max_age_seconds
    )
    if signed is not None:
        return signed
    try:
        parsed = parse_pipeline(command.pipeline, environments=keys.environments, roles=keys.book)
    except ConfigError as exc:
        return str(exc)
    roles = keys.roles_of(command.key_id or "")
    for environment in parsed.environments:
        verdict = may(roles, Permission.START, environment)
        if not verdict:
            return f"a pipeline starts rollouts in {environment}: {verdict.reason}"
    return None if asked.held is None else _pipeline_on_state(command, parsed, asked, asked.held)


def _pipeline_on_state(
    command: PipelineCommand, pipeline: Pipeline, asked: _Asked, held: Held
) -> str | None:
    """Why the pipelines' start would refuse ``pipeline`` on the rollouts held, or None."""
    default = asked.keys.environments.default
    keys = {env: scoped(command.flag, env, default) for env in pipeline.environments}
    return pipeline_refusal(pipeline, asked.now, held.backends) or held.trial.pipeline(
        pipeline, keys
    )


def _rollout_refusal(command: Command, raw: JsonObject, asked: _Asked) -> str | None:
    keys = asked.keys
    flag, refused = commands.where(command, keys.environments)
    refused = refused or commands.refusal(
        command, raw, keys=keys, now=asked.now, max_age_seconds=asked.max_age_seconds
    )
    roles = keys.roles_of(command.key_id or "")
    refused = refused or commands.role_refusal(command, roles, keys.environments)
    if refused is not None or asked.held is None:
        return refused
    event = commands.admitted(
        command,
        refused=None,
        now=asked.now,
        backends=asked.held.backends,
        rollout_id=uuid.uuid4().hex,
        salt=secrets.token_hex(8),
        flag=flag,
        roles=commands.approving_roles(roles, command, keys.environments),
        holder=keys.holder_of(command.key_id or "") or "",
    )
    if asked.held.team_windows and not isinstance(event, CommandRefused):
        event = replace(event, team_windows=asked.held.team_windows)
    return asked.held.trial.command(event)


def _id_of(value: bytes) -> str | None:
    try:
        loaded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    found = loaded.get("id") if isinstance(loaded, dict) else None
    return found[:128] if isinstance(found, str) else None
