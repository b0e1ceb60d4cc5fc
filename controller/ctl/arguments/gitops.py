"""The arguments of ``rolloutctl validate``, ``diff``, ``apply`` (desired state in files) and
``restore``."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.ctl.options import add_url, broker_options, output_options, signing_options

FILES_HELP = (
    "a directory of YAML/JSON files: plans, pipelines, rollouts to run, segments, app keys "
    "(by name and scope), roles and team windows (docs/gitops.md)"
)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    validate = commands.add_parser(
        "validate",
        help="check a directory of desired state offline",
        description="Read every file of DIR as apply would and check it without the "
        "controller: each file's kind, its fields, the plans and pipelines rollouts name, "
        "the ids files segments name. Exit 0 when all are valid, 78 naming each problem.",
    )
    _add_directory(validate)
    diff = commands.add_parser(
        "diff",
        parents=[signing_options(), output_options()],
        help="show what apply would send to the controller",
        description="Compare DIR with the live controller (its HTTP API) and print the "
        "commands apply would send, as canonical JSON without what is drawn at send time "
        "(id, ts, signature, a new app key's id and secret); objects changed by hand since "
        "the last apply, and rollouts still running another plan, are shown as held. Exit "
        "0 when nothing differs, 1 when something does, 5 when the controller could not be "
        "read, 78 for invalid files.",
    )
    _add_directory(diff)
    _add_live(diff)
    apply = commands.add_parser(
        "apply",
        parents=[signing_options(), broker_options(), output_options()],
        help="make the controller hold DIR's desired state, with signed commands",
        description="Sign the commands diff shows with your key, ask the controller whether "
        "it would admit every one (a CI key holding a role is refused what the role does "
        "not allow, as a person is) and apply it on the state it holds (a start another "
        "flag's holdout or prerequisites refuse, a flag already running), and send none "
        "when it would refuse any, naming each object refused; else send them, segments "
        "and keys first, wait for each decision and report applied or rejected per object; "
        "after one is rejected, the segments created before it are deleted again. An "
        "object changed by hand "
        "since the last apply is reported and left alone unless --force. Exit 0 when all "
        "applied, 1 when something was held, 3 when one was rejected, 4 when a decision "
        "did not come in time, 78 for invalid files.",
    )
    _add_directory(apply)
    _add_live(apply)
    apply.add_argument(
        "--dry-run", action="store_true", help="only check the files offline, as validate does"
    )
    apply.add_argument(
        "--secrets-dir",
        type=Path,
        metavar="DIR",
        help="where a new app key's secret is written (NAME.secret, mode 0600); never printed",
    )
    apply.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long per object (30)",
    )


def _add_directory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--files", dest="directory", type=Path, required=True, metavar="DIR", help=FILES_HELP
    )


def _add_live(parser: argparse.ArgumentParser) -> None:
    add_url(parser)
    parser.add_argument(
        "--force", action="store_true", help="replace objects changed by hand since the last apply"
    )
    parser.add_argument("--verbose", action="store_true", help="also list the objects in sync")


RESTORE_MAX_RECORDS = 1_000_000


def add_restore(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rolloutctl restore``."""
    sub = commands.add_parser(
        "restore",
        parents=[signing_options(), broker_options()],
        help="bring a flag (and the segments its plan names) back to the state after a decision",
        description="Read decision ID from the decisions topic and propose the signed commands "
        "that bring FLAG back to the state after it: its rollout at that stage and phase "
        "(promotes made against each stage, or an abort and a start of the same plan from "
        "that stage), the segments its plan names put back as they were. Nothing is sent "
        "without --yes; each step is sent like any command and its decision awaited before "
        "the next. Refused, with the reason, where the state cannot be brought back: no such "
        "decision, a flag the controller does not know, a state no command reaches, a "
        "segment whose content then is unknown. With --all-flags, every flag a decision "
        "left in a state is restored to its last decision, one after another.",
        epilog="Exit codes: 0 restored, already so or proposed; 1 refused or unreadable; "
        "2 usage; 3 a step rejected; 4 no decision in time.",
    )
    add_url(sub)
    sub.add_argument("flag", metavar="FLAG", nargs="?", help="the flag key")
    sub.add_argument("--to-decision", metavar="ID", help="the decision's id")
    sub.add_argument(
        "--all-flags",
        action="store_true",
        help="every flag a decision left in a state, each to its last decision (no FLAG)",
    )
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the proposal, send nothing")
    mode.add_argument("--yes", action="store_true", help="sign and send the proposed commands")
    sub.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="wait this long (30)"
    )
    sub.add_argument(
        "--max-records",
        type=int,
        default=RESTORE_MAX_RECORDS,
        metavar="N",
        help=f"read at most this many decisions and commands (default: {RESTORE_MAX_RECORDS:,})",
    )
    sub.add_argument("--json", action="store_true", help="print the proposal as JSON")
