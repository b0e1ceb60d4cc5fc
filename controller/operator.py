"""The ``rolloutctl`` command: operator keys and signed commands.

``keygen`` makes an Ed25519 key pair: the private key stays in a 0600 file on
the operator's machine, the public key goes into the controller's
``engine.operator_keys``. ``sign`` prints a signed command as one JSON line,
``send`` produces it to the commands topic (key: the flag), and ``verify``
checks a command's signature against a public key.

The command that ``sign`` prints and the value that ``send`` produces come
from the same function, :func:`signed_command`, and are encoded by
:func:`encode_command`; the controller verifies the signature over exactly
these bytes, so nothing re-serializes the command in between.

Exit codes: 0 success, 1 failure (invalid signature, broker error), 2 usage
(including a command the contract refuses), 78 bad configuration, plan or key.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import re
import stat
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml
from pydantic import ValidationError

from controller.core import signing
from controller.core.decoding import summarize
from controller.core.errors import BrokerError, ConfigError, ControllerError
from controller.core.messages import Command, CommandAction
from controller.core.plan import DEFAULT_PLAN, Plan, load_plan

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from controller.settings import KafkaSettings

PROG = "rolloutctl"
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG
ENV_ACTOR = "ROLLOUTCTL_ACTOR"
ENV_KEY = "ROLLOUTCTL_KEY"
ENV_KEY_ID = "ROLLOUTCTL_KEY_ID"
DEFAULT_KEY_DIR = "~/.config/rolloutctl"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Key ids ``keygen`` accepts: safe as a file name and as a YAML key."""


class UsageError(ControllerError):
    """The arguments do not make a valid command; exit code 2."""


# -- building, encoding and sending commands ------------------------------------------


def build_command(
    action: CommandAction | str,
    flag: str,
    *,
    actor: str,
    key_id: str,
    reason: str = "",
    plan: Plan | None = None,
    to_end: bool = False,
    command_id: str | None = None,
    ts_ms: int | None = None,
) -> dict[str, Any]:
    """An unsigned command, validated against the contract.

    ``plan`` is required with ``start`` and refused with any other action;
    ``to_end`` is only allowed with ``promote``. Raises :class:`UsageError`
    naming the offending field.
    """
    action = _action(action)
    _check_options(action, plan=plan, to_end=to_end)
    command: dict[str, Any] = {
        "type": "command",
        "v": 1,
        "id": command_id or uuid.uuid4().hex,
        "ts": time.time_ns() // 1_000_000 if ts_ms is None else ts_ms,
        "action": action.value,
        "flag": flag,
        "actor": actor,
        "reason": reason,
        "key_id": key_id,
    }
    if plan is not None:
        command["plan"] = plan.model_dump(mode="json")
    if action is CommandAction.PROMOTE:
        command["to_end"] = to_end
    try:
        Command.model_validate(command)
    except ValidationError as exc:
        raise UsageError(f"invalid command: {summarize(exc)}") from exc
    return command


def signed_command(
    action: CommandAction | str,
    flag: str,
    *,
    private_key: Ed25519PrivateKey,
    key_id: str,
    actor: str,
    reason: str = "",
    plan: Plan | None = None,
    to_end: bool = False,
    command_id: str | None = None,
    ts_ms: int | None = None,
) -> dict[str, Any]:
    """A validated command with ``sig``: what ``sign`` prints and ``send`` produces."""
    command = build_command(
        action,
        flag,
        actor=actor,
        key_id=key_id,
        reason=reason,
        plan=plan,
        to_end=to_end,
        command_id=command_id,
        ts_ms=ts_ms,
    )
    command["sig"] = signing.sign(command, private_key)
    return command


def encode_command(command: dict[str, Any]) -> bytes:
    """The command as one compact line of UTF-8 JSON, the Kafka message value."""
    return orjson.dumps(command)


def command_record(command: dict[str, Any]) -> tuple[bytes, bytes]:
    """The Kafka key (the flag) and value of a command."""
    return str(command["flag"]).encode(), encode_command(command)


async def send_command(
    command: dict[str, Any], *, kafka: KafkaSettings, topic: str, timeout_s: float = 30.0
) -> tuple[int, int]:
    """Produce ``command`` with acks=all; the partition and offset it was written at.

    Raises :class:`BrokerError` when the broker cannot be reached or refuses it.
    """
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - keep `--help` fast
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    from controller.adapters.kafka import client_options  # noqa: PLC0415

    key, value = command_record(command)
    options = client_options(kafka) | {"client_id": PROG}
    producer = AIOKafkaProducer(**options, acks="all", request_timeout_ms=int(timeout_s * 1000))
    try:
        async with asyncio.timeout(timeout_s):
            await producer.start()
            meta = await producer.send_and_wait(topic, key=key, value=value)
    except (KafkaError, OSError, TimeoutError) as exc:
        raise BrokerError(f"cannot send to {topic} at {kafka.bootstrap_servers}: {exc!r}") from exc
    finally:
        await producer.stop()
    return int(meta.partition), int(meta.offset)


def verify_command(command: dict[str, Any], public_key: str) -> str | None:
    """Why ``command`` is not a valid signed command for ``public_key``, or None.

    Raises ValueError if ``public_key`` is not a base64 Ed25519 public key.
    """
    key = signing.load_public_key(public_key)
    try:
        Command.model_validate(command)
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
        raise ConfigError(f"cannot read key file {path}: {_os_reason(exc)}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _warn(f"key file {path} is readable by others; run `chmod 600 {path}`")
    try:
        return signing.load_private_key(text)
    except ValueError as exc:
        # The message never includes the file's contents.
        raise ConfigError(f"key file {path} does not hold a base64 Ed25519 private key") from exc


def config_snippet(key_id: str, public_key: str) -> str:
    """The YAML an admin adds to the controller config to trust ``public_key``."""
    data = {"engine": {"operator_keys": {key_id: public_key}}}
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)


def default_key_dir() -> Path:
    return Path(DEFAULT_KEY_DIR).expanduser()


# -- command line ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate rollouts: make an operator key, then sign and send commands "
        "(start, pause, resume, promote, rollback, abort, kill, approve) to the controller.",
        epilog=f"Defaults come from {ENV_ACTOR}, {ENV_KEY} and {ENV_KEY_ID}. Exit codes: "
        "0 ok, 1 failure, 2 usage, 78 bad configuration, plan or key.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_keygen(commands)
    common = _command_options()
    commands.add_parser(
        "sign",
        parents=[common],
        help="print a signed command as one JSON line",
        description="Build a command, validate it, sign it and print it as one JSON line.",
    )
    send = commands.add_parser(
        "send",
        parents=[common],
        help="sign a command and produce it to the commands topic",
        description="Build and sign a command, produce it to the commands topic (key: the "
        "flag, acks=all) and print its id.",
    )
    _add_send_options(send)
    verify = commands.add_parser(
        "verify",
        help="check a command's signature (command JSON on stdin)",
        description="Read a command as JSON from stdin; print `valid` and exit 0, or "
        "`invalid: REASON` and exit 1.",
    )
    verify.add_argument(
        "--public-key", required=True, metavar="BASE64", help="the operator's public key"
    )
    return parser


def _add_keygen(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keygen = commands.add_parser(
        "keygen",
        help="make an operator key pair",
        description="Make an Ed25519 key pair: write the private key to DIR/ID.key (mode "
        "0600) and print the public key with the YAML an admin adds to the controller config.",
    )
    keygen.add_argument(
        "--key-id", required=True, metavar="ID", help="name of the key (letters, digits, . _ -)"
    )
    keygen.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"directory of the private key file (default: {DEFAULT_KEY_DIR})",
    )
    keygen.add_argument("--force", action="store_true", help="replace an existing key file")


def _command_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    actions = [a.value for a in CommandAction]
    common.add_argument(
        "action", choices=actions, metavar="ACTION", help=f"one of: {', '.join(actions)}"
    )
    common.add_argument("flag", metavar="FLAG", help="the flag key")
    common.add_argument(
        "--key",
        type=Path,
        metavar="FILE",
        help=f"private key file (default: ${ENV_KEY}, else {DEFAULT_KEY_DIR}/ID.key)",
    )
    common.add_argument("--key-id", metavar="ID", help=f"key id (default: ${ENV_KEY_ID})")
    common.add_argument(
        "--actor", metavar="NAME", help=f"who issues it (default: ${ENV_ACTOR}, else login name)"
    )
    common.add_argument("--reason", default="", metavar="TEXT", help="why, for the audit trail")
    common.add_argument(
        "--plan",
        type=Path,
        metavar="FILE",
        help="rollout plan YAML, with start (default: the built-in plan)",
    )
    common.add_argument("--to-end", action="store_true", help="with promote: go straight to 100%%")
    return common


def _add_send_options(send: argparse.ArgumentParser) -> None:
    send.add_argument(
        "--config", type=Path, metavar="FILE", help="controller settings YAML (Kafka, topics)"
    )
    send.add_argument("--bootstrap", metavar="HOST:PORT", help="broker list, overrides --config")
    send.add_argument("--topic", metavar="NAME", help="commands topic, overrides --config")
    send.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long (default: 30)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except ControllerError as exc:
        return _fail(str(exc), EXIT_FAILURE)
    except OSError as exc:
        return _fail(_os_reason(exc), EXIT_FAILURE)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "keygen":
        return _keygen(args.key_id, args.out or default_key_dir(), force=args.force)
    if args.command == "verify":
        return _verify(args.public_key, sys.stdin.read())
    command = _command_from_args(args)
    if args.command == "sign":
        sys.stdout.write(encode_command(command).decode() + "\n")
        return 0
    return _send(args, command)


def _keygen(key_id: str, out: Path, *, force: bool) -> int:
    if not KEY_ID_PATTERN.match(key_id):
        raise UsageError(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    path = out / f"{key_id}.key"
    key, public = signing.generate_key()
    write_private_key(path, key, force=force)
    _warn(f"wrote the private key to {path} (mode 0600); keep it secret")
    print(f"public key: {public}")
    print("\nadd to the controller config (YAML), then restart the controller:\n")
    print(config_snippet(key_id, public), end="")
    return 0


def _command_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The signed command the ``sign`` and ``send`` arguments describe."""
    key_id = args.key_id or os.environ.get(ENV_KEY_ID)
    if not key_id:
        raise UsageError(f"no key id: pass --key-id or set {ENV_KEY_ID}")
    return signed_command(
        args.action,
        args.flag,
        private_key=read_private_key(_key_path(args.key, key_id)),
        key_id=key_id,
        actor=_actor(args.actor),
        reason=args.reason,
        plan=_plan(args.action, args.plan),
        to_end=args.to_end,
    )


def _key_path(given: Path | None, key_id: str) -> Path:
    if given is not None:
        return given
    if env := os.environ.get(ENV_KEY):
        return Path(env).expanduser()
    if KEY_ID_PATTERN.match(key_id):
        return default_key_dir() / f"{key_id}.key"
    raise UsageError(f"no key file: pass --key or set {ENV_KEY}")


def _actor(given: str | None) -> str:
    if given:
        return given
    if env := os.environ.get(ENV_ACTOR):
        return env
    try:
        return getpass.getuser()
    except (OSError, KeyError) as exc:
        raise UsageError(f"no actor: pass --actor or set {ENV_ACTOR}") from exc


def _plan(action: str, path: Path | None) -> Plan | None:
    if action != CommandAction.START:
        if path is not None:
            raise UsageError(f"--plan goes with start, not {action}")
        return None
    if path is None:
        _warn("no --plan given; using the default plan (1% -> 5% -> 25% -> 50% -> 100%)")
        return DEFAULT_PLAN
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read plan {path}: {_os_reason(exc)}") from exc
    return load_plan(text, source=f"plan {path}")


def _send(args: argparse.Namespace, command: dict[str, Any]) -> int:
    from controller.settings import load_settings  # noqa: PLC0415 - keep `--help` fast

    # aiokafka logs each failed connection attempt; the one-line error below says it.
    logging.getLogger("aiokafka").addHandler(logging.NullHandler())
    settings = load_settings(args.config)
    kafka = settings.kafka
    if args.bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
    topic = args.topic or settings.topics.commands
    partition, offset = asyncio.run(
        send_command(command, kafka=kafka, topic=topic, timeout_s=args.timeout)
    )
    _warn(f"sent {command['action']} {command['flag']} to {topic}[{partition}]@{offset}")
    print(command["id"])
    return 0


def _verify(public_key: str, text: str) -> int:
    try:
        signing.load_public_key(public_key)
    except ValueError as exc:
        raise UsageError(f"--public-key: {exc}") from exc
    try:
        command = orjson.loads(text)
    except orjson.JSONDecodeError:
        command = None
    if not isinstance(command, dict):
        print("invalid: stdin does not hold a JSON object")
        return EXIT_FAILURE
    problem = verify_command(command, public_key)
    print("valid" if problem is None else f"invalid: {problem}")
    return 0 if problem is None else EXIT_FAILURE


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


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror} ({exc.filename})" if exc.filename else exc.strerror
    return str(exc)


def _warn(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    lines = (line.strip() for line in message.splitlines())
    _warn("; ".join(line for line in lines if line))
    return code


if __name__ == "__main__":
    sys.exit(main())
