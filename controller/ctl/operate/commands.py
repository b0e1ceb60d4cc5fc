"""Operator keys and signed commands: what ``rolloutctl`` builds and sends.

``keygen`` makes an Ed25519 key pair: the private key stays in a 0600 file on
the operator's machine, the public key goes into the controller's
``engine.operator_keys``. A command is built and validated as the contract's
model by :func:`command_model` (the segment, pipeline, app-key and ingest
commands by their own modules' builders, as theirs), signed by
:func:`signed_model` or :func:`~controller.core.trust.signing.sign_command`
(the signature covers the object it is sent as) and encoded once by
:func:`encode_command`; the controller verifies the signature over exactly the
object it receives, so nothing re-serializes the command in between. The
command line itself is :mod:`controller.ctl.app`.
"""

from __future__ import annotations

import os
import re
import stat
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict, TypeVar, Unpack

import orjson
from pydantic import ValidationError

from controller.core.common import ConfigError, dump_yaml
from controller.core.machine import IngestCommand
from controller.core.release import PipelineCommand
from controller.core.rollouts import Plan
from controller.core.trust import AppKeyCommand, signing
from controller.core.wire import (
    Command,
    CommandAction,
    JsonObject,
    SegmentCommand,
    SignedCommand,
    sent_object,
    summarize,
)
from controller.ctl.terminal import DEFAULT_KEY_DIR, PROG, os_reason, warn
from controller.ctl.usage import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from controller.settings import KafkaSettings

M = TypeVar("M", bound=SignedCommand)
"""A signed command's contract model: :class:`~controller.core.wire.Command` or another."""

KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Key ids ``keygen`` accepts: safe as a file name and as a YAML key."""


# -- building, encoding and sending commands ------------------------------------------


def command_model(
    action: CommandAction | str,
    flag: str,
    *,
    actor: str,
    key_id: str | None,
    reason: str = "",
    plan: Plan | None = None,
    to_end: bool = False,
    command_id: str | None = None,
    ts_ms: int | None = None,
    at: datetime | None = None,
    environment: str | None = None,
    applied: str | None = None,
    expect_version: int | None = None,
    expect_rollout_id: str | None = None,
    expect_stage: int | None = None,
) -> Command:
    """An unsigned command, built from the arguments as the contract's model;
    ``environment``: where it acts (left out of the command when None: the controller's
    default environment); ``key_id`` left out when None (a proposal, which its signer's
    key names); ``applied``: the desired rollout's digest (``rolloutctl apply``);
    ``expect_*``: a proposal's preconditions, what the flag was when it was made.

    ``plan`` is required with ``start`` and refused with any other action;
    ``to_end`` is only allowed with ``promote`` (and sent only with it), ``at`` (a
    scheduled start) with ``start``. Only the fields given are sent
    (:func:`~controller.core.wire.sent_object`). Raises :class:`UsageError`
    naming the offending field.
    """
    action = _action(action)
    _check_options(action, plan=plan, to_end=to_end)
    if at is not None and action is not CommandAction.START:
        raise UsageError(f"--at goes with start, not {action.value}")
    try:
        command = Command(
            type="command",
            v=1,
            id=command_id or uuid.uuid4().hex,
            ts=time.time_ns() // 1_000_000 if ts_ms is None else ts_ms,
            action=action,
            flag=flag,
            actor=actor,
            reason=reason,
            key_id=key_id,
            plan=None if plan is None else plan.model_dump(mode="json"),
            at=at,
            environment=environment,
            applied=applied,
            expect_version=expect_version,
            expect_rollout_id=expect_rollout_id,
            expect_stage=expect_stage,
        )
    except ValidationError as exc:
        raise UsageError(f"invalid command: {summarize(exc)}") from exc
    if action is CommandAction.PROMOTE:
        # set, so sent: today's commands carry to_end with promote only
        command = command.model_copy(update={"to_end": to_end})
    return command


class CommandOptions(TypedDict, total=False):
    """The optional arguments of :func:`command_model`, passed on unchanged by
    :func:`signed_model`."""

    reason: str
    plan: Plan | None
    to_end: bool
    command_id: str | None
    ts_ms: int | None
    at: datetime | None
    environment: str | None
    applied: str | None
    expect_version: int | None
    expect_rollout_id: str | None
    expect_stage: int | None


def signed_model(
    action: CommandAction | str,
    flag: str,
    *,
    private_key: Ed25519PrivateKey,
    key_id: str,
    actor: str,
    **options: Unpack[CommandOptions],
) -> Command:
    """The command the arguments describe, signed: what ``sign`` prints and ``send`` sends."""
    command = command_model(action, flag, actor=actor, key_id=key_id, **options)
    return signing.sign_command(command, private_key)


def contract_model(contract: type[M], fields: Mapping[str, object], *, what: str = "command") -> M:
    """``contract``'s model of ``fields``, the only fields it sends; a usage error naming
    the field (``invalid {what}: ...``) when the contract refuses one."""
    try:
        return contract.model_validate(fields)
    except ValidationError as exc:
        raise UsageError(f"invalid {what}: {summarize(exc)}") from exc


def new_message() -> JsonObject:
    """The fields drawn for each new command: ``v``, a fresh ``id``, ``ts`` now."""
    return {"v": 1, "id": uuid.uuid4().hex, "ts": time.time_ns() // 1_000_000}


def encode_command(command: SignedCommand | Mapping[str, object]) -> bytes:
    """The command as one compact line of UTF-8 JSON, the Kafka message value: a model
    as :func:`~controller.core.wire.sent_object` gives it (the object its signature
    covers), a JSON object (a file someone else signed, sent as they signed it) as it is."""
    if isinstance(command, SignedCommand):
        return orjson.dumps(sent_object(command))
    return orjson.dumps(command)


def command_record(command: Command) -> tuple[bytes, bytes]:
    """The Kafka key (the flag) and value of a command."""
    return command.flag.encode(), encode_command(command)


async def send_command(
    value: bytes,
    *,
    key: bytes,
    kafka: KafkaSettings,
    topic: str,
    timeout_s: float = 30.0,
) -> tuple[int, int]:
    """Produce a command's encoded ``value`` (:func:`encode_command`, sent as it was
    signed) under ``key`` with acks=all; the partition and offset it was written at.

    Raises :class:`~controller.core.common.errors.BrokerError` when the broker cannot be
    reached or refuses it.
    """
    from controller.adapters.kafka import send_and_wait  # noqa: PLC0415 - keep `--help` fast

    return await send_and_wait(
        kafka,
        topic=topic,
        key=key,
        value=value,
        client_id=PROG,
        timeout_s=timeout_s,
    )


_SIGNED_MODELS: dict[str, type[SignedCommand]] = {
    "command": Command,
    "segment_command": SegmentCommand,
    "app_key": AppKeyCommand,
    "ingest": IngestCommand,
    "pipeline": PipelineCommand,
}
"""Every signed command on the commands topic, by its ``type``."""


def verify_command(command: Mapping[str, object], public_key: str) -> str | None:
    """Why ``command`` is not a valid signed command for ``public_key``, or None.

    Raises ValueError if ``public_key`` is not a base64 Ed25519 public key.
    """
    key = signing.load_public_key(public_key)
    model = _SIGNED_MODELS.get(str(command.get("type")))
    if model is None:
        kinds = ", ".join(_SIGNED_MODELS)
        return f"not a valid command: type {command.get('type')!r} is none of {kinds}"
    try:
        model.model_validate(command)
    except ValidationError as exc:
        return f"not a valid command: {summarize(exc)}"
    if "sig" not in command:
        return "unsigned command"
    if not signing.verify(command, key):
        return "bad signature"
    return None


# -- keys -----------------------------------------------------------------------------


def write_private_key(path: Path, key: Ed25519PrivateKey, *, force: bool = False) -> None:
    """Write ``key`` as base64 to a new file readable by its owner only (0600).

    Refuses to replace an existing file unless ``force``.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if force:
        path.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise UsageError(f"{path} exists; pass --force to replace it") from exc
    with os.fdopen(fd, "w", encoding="ascii") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(signing.private_key_text(key) + "\n")


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """The private key in ``path``; :class:`ConfigError` if unreadable or not a key."""
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except UnicodeDecodeError as exc:
        raise ConfigError(f"key file {path} is not a text file") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {os_reason(exc)}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(f"key file {path} is readable by others; run `chmod 600 {path}`")
    try:
        return signing.load_private_key(text)
    except ValueError as exc:
        # The message never includes the file's contents.
        raise ConfigError(f"key file {path} does not hold a base64 Ed25519 private key") from exc


def config_snippet(key_id: str, public_key: str) -> str:
    """The YAML an admin adds to the controller config to trust ``public_key``."""
    data = {"engine": {"operator_keys": {key_id: public_key}}}
    return dump_yaml(data, default_flow_style=False, sort_keys=False)


def default_key_dir() -> Path:
    return Path(DEFAULT_KEY_DIR).expanduser()


# -- small helpers ----------------------------------------------------------------------


def _action(action: CommandAction | str) -> CommandAction:
    try:
        return CommandAction(action)
    except ValueError as exc:
        choices = ", ".join(a.value for a in CommandAction)
        raise UsageError(f"unknown action {action!r}; one of {choices}") from exc


def _check_options(action: CommandAction, *, plan: Plan | None, to_end: bool) -> None:
    if action is CommandAction.START and plan is None:
        raise UsageError("start needs a plan")
    if action is not CommandAction.START and plan is not None:
        raise UsageError(f"a plan goes with start, not {action.value}")
    if to_end and action is not CommandAction.PROMOTE:
        raise UsageError(f"--to-end goes with promote, not {action.value}")
