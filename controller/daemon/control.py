"""Records of the commands and monitors topics: bounded, parsed and authenticated.

A record over :data:`MAX_CONTROL_BYTES` is refused unread. A command must be
signed with a known operator key (Ed25519), be fresh (its timestamp within
``engine.command_max_age_seconds`` of now) and carry an id not applied before;
:func:`refusal` says which check failed. What the engine then does with a
command or a monitor alert is the state machine's business.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.core import signing
from controller.core.errors import ConfigError
from controller.core.messages import Command, MonitorAlert
from controller.core.plan import Plan, parse_plan
from controller.core.planlint import errors, lint
from controller.core.rollout import CommandInput
from controller.core.timestamps import as_datetime
from controller.ports import Record

MAX_CONTROL_BYTES = 256 * 1024
"""The largest command or monitor alert read; a plan fits in far less."""


def parse(record: Record, *, monitors_topic: str) -> MonitorAlert | tuple[Command, dict[str, Any]]:
    """The monitor alert, or the command with its raw JSON (what its signature covers).

    Raises ``ValidationError``, ``orjson.JSONDecodeError`` or ``ValueError``
    for input that breaks the contract.
    """
    if record.topic == monitors_topic:
        return MonitorAlert.model_validate_json(record.value or b"")
    raw = orjson.loads(record.value or b"")
    if not isinstance(raw, dict):
        raise ValueError("a command must be a JSON object")  # noqa: TRY004 - bad input
    return Command.model_validate(raw), raw


def refusal(
    command: Command,
    raw: dict[str, Any],
    *,
    keys: Mapping[str, Ed25519PublicKey],
    now: datetime,
    max_age_seconds: float,
) -> str | None:
    """Why the command may not run (signature, key, freshness), or None."""
    if command.sig is None or command.key_id is None:
        return "unsigned command"
    key = keys.get(command.key_id)
    if key is None:
        return f"unknown key id {command.key_id!r}"
    if not signing.verify(raw, key):
        return "bad signature"
    age = abs((now - as_datetime(command.ts)).total_seconds())
    if age > max_age_seconds:
        return f"stale command: {age:.0f}s from now, limit {max_age_seconds:.0f}s"
    return None


def command_input(command: Command, plan: Plan | None, now: datetime) -> CommandInput:
    """The machine's input for an authenticated command, with fresh ids for a new rollout."""
    return CommandInput(
        action=command.action,
        flag=command.flag,
        command_id=command.id,
        actor=command.actor,
        key_id=command.key_id or "",
        now=now,
        reason=command.reason,
        plan=plan,
        to_end=command.to_end,
        new_rollout_id=uuid.uuid4().hex,
        new_salt=secrets.token_hex(8),
    )


def plan(data: Any, *, backends: frozenset[str]) -> Plan:
    """A start command's plan; :class:`ConfigError` if invalid, if it cannot work as written
    (an error of :func:`~controller.core.planlint.lint`: a stage that never completes, a
    guardrail never tested) or if it names a flag platform this controller is not connected
    to (a plan for Unleash without ``unleash.url``). Warnings do not refuse a plan.
    """
    parsed = parse_plan(data, source="plan")
    if wrong := errors(lint(parsed)):
        raise ConfigError("plan cannot work: " + "; ".join(map(str, wrong)))
    if parsed.unleash is not None and "unleash" not in backends:
        raise ConfigError(
            "invalid plan: backend.unleash: this controller has no Unleash (unleash.url is not set)"
        )
    return parsed
