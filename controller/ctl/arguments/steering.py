"""The arguments of the signed commands: the actions, ``keygen``, ``sign``, ``send``, ``verify``.

The actions steer a rollout (``start``, ``pause``, ... ``approve``); ``keygen`` makes an
operator's key pair; ``sign``, ``send`` and ``verify`` handle raw commands. Their work is
:mod:`controller.ctl.operate`'s.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from controller.ctl.options import broker_options, output_options, signing_options
from controller.ctl.terminal import DEFAULT_KEY_DIR

Subparsers = argparse._SubParsersAction

ACTIONS = {
    "start": "start a rollout of FLAG with a plan",
    "pause": "pause a running rollout",
    "resume": "resume a rollout paused by an operator or a sample-ratio mismatch",
    "promote": "skip to the next stage (or to 100% with --to-end)",
    "rollback": "roll back: every unit gets control",
    "abort": "stop the rollout and serve control, without calling it a failure",
    "kill": "kill the flag now (also from a completed rollout)",
    "approve": "approve a stage that waits for a person, or overrule the advisor",
}
"""Each action a command may carry (the core's ``CommandAction``, in its order), with its help:
named here so that the parser loads none of the core; a test keeps the two in step."""

AT_HELP = (
    "start at TIME (RFC 3339 with an offset, e.g. 2026-12-01T09:00:00+01:00), at most 366 "
    "days ahead: the start is scheduled until then; abort cancels it"
)


def moment(text: str) -> datetime:
    """An ``--at`` time: RFC 3339 / ISO 8601 with an offset (a naive time is refused)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset (add Z or +01:00)")
    return value


def add_actions(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """One command per action."""
    for action, text in ACTIONS.items():
        _add_action(commands, action, text)


def _add_action(commands: Subparsers[argparse.ArgumentParser], action: str, text: str) -> None:
    sub = commands.add_parser(
        action,
        parents=[signing_options(), broker_options(), output_options()],
        help=text.replace("%", "%%"),  # help strings are %-formatted
        description=f"{text[:1].upper()}{text[1:]}. "
        "The command is signed with your "
        "key, sent to the commands topic, and the controller's decision is awaited: "
        "exit 0 when applied, 3 with the reason when rejected, 4 if none came in time.",
    )
    sub.add_argument("flag", metavar="FLAG", help="the flag key")
    sub.add_argument(
        "--environment",
        metavar="NAME",
        help="the environment to act in (default: the controller's default environment)",
    )
    if action == "start":
        sub.add_argument(
            "--plan", type=Path, metavar="FILE", help="rollout plan YAML (default: built-in)"
        )
        sub.add_argument("--at", type=moment, metavar="TIME", help=AT_HELP)
    if action == "promote":
        sub.add_argument("--to-end", action="store_true", help="go straight to 100%%")
    sub.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="wait this long (30)"
    )
    sub.add_argument(
        "--no-wait", action="store_true", help="send and exit without waiting for the decision"
    )
    sub.set_defaults(action=action)


def add_keygen(commands: Subparsers[argparse.ArgumentParser]) -> None:
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


def add_raw(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """``sign``, ``send`` and ``verify``."""
    raw = argparse.ArgumentParser(add_help=False, parents=[signing_options()])
    actions = list(ACTIONS)
    raw.add_argument(
        "action",
        nargs="?",
        choices=actions,
        metavar="ACTION",
        help=f"one of: {', '.join(actions)} (not with --file)",
    )
    raw.add_argument("flag", nargs="?", metavar="FLAG", help="the flag key (not with --file)")
    raw.add_argument(
        "--file",
        type=Path,
        metavar="FILE",
        help="the command as JSON (- for stdin), e.g. a proposal of `rolloutctl mcp`: signed "
        "as yours (actor, key id, time; its id and preconditions kept)",
    )
    raw.add_argument("--environment", metavar="NAME", help="the environment to act in")
    raw.add_argument("--plan", type=Path, metavar="FILE", help="rollout plan YAML, with start")
    raw.add_argument("--to-end", action="store_true", help="with promote: go straight to 100%%")
    raw.add_argument("--at", type=moment, metavar="TIME", help="with start: " + AT_HELP)
    commands.add_parser(
        "sign",
        parents=[raw],
        help="print a signed command as one JSON line",
        description="Build a command, validate it, sign it and print it as one JSON line.",
    )
    _add_send(commands, raw)
    verify = commands.add_parser(
        "verify",
        help="check a command's signature (command JSON on stdin)",
        description="Read a signed command as JSON from stdin (a flag, segment, app-key, "
        "ingest or pipeline command, by its type, as in an audit export's data); print "
        "`valid` and exit 0, or `invalid: REASON` and exit 1.",
    )
    verify.add_argument(
        "--public-key", required=True, metavar="BASE64", help="the operator's public key"
    )


def _add_send(commands: Subparsers[argparse.ArgumentParser], raw: argparse.ArgumentParser) -> None:
    send = commands.add_parser(
        "send",
        parents=[raw, broker_options()],
        help="sign a command and produce it, without waiting",
        description="Build and sign a command, produce it to the commands topic (key: the "
        "flag, acks=all) and print its id. The action commands do this and wait.",
    )
    send.add_argument("--topic", metavar="NAME", help="commands topic, overrides --config")
    send.add_argument("--sign", action="store_true", help="with --file: sign it first")
    send.add_argument(
        "--wait",
        action="store_true",
        help="await the decision: exit 0 applied, 3 rejected (with the reason), 4 none in time",
    )
    send.add_argument("--json", action="store_true", help="with --wait: print the decision")
    send.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="give up after this (30)"
    )
