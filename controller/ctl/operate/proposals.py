"""``rolloutctl sign --file`` and ``rolloutctl send --file``: a command given whole, as JSON.

A proposal (what ``rolloutctl mcp`` hands a person) is an unsigned command: its
action, flag, reason, plan and the preconditions it was made against
(``expect_version``, ``expect_rollout_id``, ``expect_stage``). Signing it makes
it the signer's: ``actor`` and ``key_id`` become the signer's and ``ts`` the
time of signing (a proposal may wait longer than the controller's freshness
window), while its ``id`` is kept, so one proposal applies at most once however
often it is signed. ``send --sign --wait --file`` signs, sends and awaits the
decision in one step, for on-call. A file to sign is read into the contract's
model and made the signer's as a model; a file that already carries a signature
is sent as it is, byte for byte the object someone else signed, and never signed
again.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from controller.core.machine import MAX_CONTROL_BYTES
from controller.core.trust import signing
from controller.core.wire import Command, JsonObject, sent_object
from controller.ctl.exits import EXIT_NO_DECISION
from controller.ctl.operate import handlers
from controller.ctl.operate.commands import contract_model, encode_command, read_private_key
from controller.ctl.terminal import os_reason, warn
from controller.ctl.usage import UsageError

FROM_ARGUMENTS = ("action", "flag", "environment", "plan", "to_end", "at")
"""What builds a command from the arguments: none of it goes with ``--file``."""


def run(args: argparse.Namespace) -> int:
    """``sign`` or ``send``: of the command in ``--file``, or of the one the arguments make."""
    command: Command | JsonObject
    if args.file is None:
        if args.action is None or args.flag is None:
            raise UsageError(f"{args.command} needs ACTION FLAG, or --file FILE")
        command = handlers.command_from_args(args)
    else:
        _check_alone(args)
        command = read_command(args.file)
        if args.command == "sign" or getattr(args, "sign", False):
            command = sign_as(command, args)
        elif "sig" not in command:
            raise UsageError(f"{args.file} holds an unsigned command: sign it with --sign")
    if args.command == "sign":
        sys.stdout.write(encode_command(command).decode() + "\n")
        return 0
    return _send(args, command)


def read_command(path: Path) -> JsonObject:
    """The command in ``path`` (``-``: stdin) as its JSON object, bounded as the controller
    bounds one and checked against the contract; a usage error naming what is wrong."""
    where = "stdin" if str(path) == "-" else str(path)
    try:
        raw = sys.stdin.buffer.read(MAX_CONTROL_BYTES + 1) if where == "stdin" else _read(path)
    except OSError as exc:
        raise UsageError(f"cannot read {where}: {os_reason(exc)}") from exc
    if len(raw) > MAX_CONTROL_BYTES:
        raise UsageError(f"{where} holds over {MAX_CONTROL_BYTES} bytes: no command is so long")
    try:
        command = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{where} holds no JSON: {exc}") from exc
    if not isinstance(command, dict):
        raise UsageError(f"{where} holds JSON that is not an object")
    contract_model(Command, command)
    return command


def sign_as(command: JsonObject, args: argparse.Namespace) -> Command:
    """``command`` read into the contract's model, made the signer's (actor, key id, time,
    and reason where one is given) and signed; its id and preconditions are kept."""
    if "sig" in command:
        raise UsageError("the command is signed already; send it without --sign")
    key_id = handlers.key_id_of(args.key_id)
    theirs: JsonObject = {"actor": handlers.actor_of(args.actor), "key_id": key_id}
    theirs["ts"] = time.time_ns() // 1_000_000
    if args.reason:
        theirs["reason"] = args.reason
    mine = contract_model(Command, command).model_copy(update=theirs)
    # model_copy checks nothing: the signer's fields are checked as the contract checks them
    mine = contract_model(Command, sent_object(mine))
    return signing.sign_command(mine, read_private_key(handlers.key_path_of(args.key, key_id)))


def _send(args: argparse.Namespace, command: Command | JsonObject) -> int:
    if not args.wait:
        return handlers.produce(args, command)
    answered = handlers.send_signed(args, command, topic=args.topic)
    if answered is None:
        sent = sent_object(command) if isinstance(command, Command) else command
        warn(f"sent {sent['action']} {sent['flag']} (id {sent['id']}), but no decision")
        return EXIT_NO_DECISION
    return handlers.shown(args, answered)


def _check_alone(args: argparse.Namespace) -> None:
    given = [name for name in FROM_ARGUMENTS if getattr(args, name, None) not in (None, False)]
    if given:
        raise UsageError(f"--file holds the whole command; leave out {', '.join(given)}")


def _read(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(MAX_CONTROL_BYTES + 1)
