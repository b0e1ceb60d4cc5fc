"""The arguments of ``rolloutctl status`` and ``rolloutctl watch``: looking, changing nothing."""

from __future__ import annotations

import argparse

from controller.ctl.options import add_url, broker_options, output_options

Subparsers = argparse._SubParsersAction

DEFAULT_EFFECT = "50%"
"""``status FLAG --effect``'s default: the core's ``DEFAULT_EFFECT`` as the option is written
(a test keeps the two in step)."""


def add_status(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "status",
        parents=[output_options()],
        help="show every rollout, or one in detail",
        description="Ask the controller's HTTP API for each rollout's phase, stage, percent, "
        "time in stage, per-arm counts and the gate's current view (guardrail bounds, SRM). "
        "With FLAG, show that rollout in detail, with the smallest regression its running "
        "stage detects with 80% power by its minimum and how much longer it needs for --effect.",
    )
    sub.add_argument("flag", nargs="?", metavar="FLAG", help="one flag, in detail")
    sub.add_argument(
        "--effect",
        metavar="SHARE",
        default=DEFAULT_EFFECT,
        help="with FLAG: the regression the running stage's remaining time is given for"
        " (default %(default)s)",
    )
    add_url(sub)


def add_watch(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "watch",
        parents=[broker_options(), output_options()],
        help="follow decisions and alerts live",
        description="Print each decision and alert the controller publishes, as it happens, "
        "until Ctrl-C (or --max / --for).",
    )
    sub.add_argument("flag", nargs="?", metavar="FLAG", help="only this flag")
    sub.add_argument("--from-beginning", action="store_true", help="replay what is on the topics")
    sub.add_argument("--max", type=int, metavar="N", help="stop after N messages")
    sub.add_argument("--for", dest="seconds", type=float, metavar="SECONDS", help="stop after this")
