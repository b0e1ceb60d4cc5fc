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

It is synchronous, with no I/O: one check reads one set of keys, even across a reload.
What it cannot foresee is what a command meets when it is applied (the flag's state then,
keys reloaded in between), said in docs/gitops.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from pydantic import ValidationError

from controller.core.common import ConfigError
from controller.core.machine import MAX_CONTROL_BYTES, commands
from controller.core.reading import CheckedCommand
from controller.core.release import (
    Permission,
    PipelineCommand,
    may,
    parse_pipeline,
    pipeline_command,
)
from controller.core.trust import app_keys
from controller.core.wire import Command, JsonObject, SegmentCommand, summarize
from controller.daemon.registries.keyring import Keyring, shared_refusal

NOT_APPLY_COMMAND = "only rollout, pipeline, segment and app-key commands are checked"


def check_commands(
    values: Sequence[bytes], *, keys: Keyring, now: datetime, max_age_seconds: float
) -> list[CheckedCommand]:
    """Each command's answer, in order (``values``: each as it would be sent)."""
    return [
        _one(index, value, keys=keys, now=now, max_age_seconds=max_age_seconds)
        for index, value in enumerate(values)
    ]


def _one(
    index: int, value: bytes, *, keys: Keyring, now: datetime, max_age_seconds: float
) -> CheckedCommand:
    if len(value) > MAX_CONTROL_BYTES:  # the intake dead-letters it unread
        why = f"oversize: {len(value)} bytes > {MAX_CONTROL_BYTES}"
        return CheckedCommand(index=index, id=None, allowed=False, reason=why)
    try:
        refused, command_id = _refusal(value, keys=keys, now=now, max_age_seconds=max_age_seconds)
    except (ValidationError, orjson.JSONDecodeError, ValueError) as exc:
        detail = summarize(exc) if isinstance(exc, ValidationError) else str(exc)
        return CheckedCommand(
            index=index, id=_id_of(value), allowed=False, reason=f"schema: {detail}"[:500]
        )
    return CheckedCommand(
        index=index, id=command_id, allowed=refused is None, reason=(refused or "")[:500]
    )


def _refusal(
    value: bytes, *, keys: Keyring, now: datetime, max_age_seconds: float
) -> tuple[str | None, str | None]:
    """Why the command in ``value`` would be refused now (None: it would be admitted), and
    its id; raises as the intake's parsing does for one that breaks the contract."""
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
        return _pipeline_refusal(started, raw, keys, now, max_age_seconds), started.id
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
        return _rollout_refusal(flag_command, raw, keys, now, max_age_seconds), flag_command.id
    return NOT_APPLY_COMMAND, None


def _pipeline_refusal(
    command: PipelineCommand, raw: JsonObject, keys: Keyring, now: datetime, max_age_seconds: float
) -> str | None:
    signed = commands.signature_refusal(
        raw, ts=command.ts, keys=keys, now=now, max_age_seconds=max_age_seconds
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
    return None


def _rollout_refusal(
    command: Command, raw: JsonObject, keys: Keyring, now: datetime, max_age_seconds: float
) -> str | None:
    _, refused = commands.where(command, keys.environments)
    refused = refused or commands.refusal(
        command, raw, keys=keys, now=now, max_age_seconds=max_age_seconds
    )
    roles = keys.roles_of(command.key_id or "")
    return refused or commands.role_refusal(command, roles, keys.environments)


def _id_of(value: bytes) -> str | None:
    try:
        loaded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    found = loaded.get("id") if isinstance(loaded, dict) else None
    return found[:128] if isinstance(found, str) else None
