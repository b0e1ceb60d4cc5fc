"""The arguments of ``rolloutctl report``: a rollout's canary report, or a holdout's."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from controller.ctl.arguments.models import add_deadline_arguments
from controller.ctl.options import add_url

Subparsers = argparse._SubParsersAction

ENVIRONMENT_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
"""An environment's name, as the controller names them: the core's pattern (a test keeps the
two in step)."""


def add_report(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "report",
        help="write a canary report of a rollout, or a holdout's report (Markdown, HTML or JSON)",
        description="Report FLAG's current rollout: each stage's duration, units and events "
        "per arm, each guardrail's result and the sample-ratio check, as the gate decided "
        "them, and every decision with who made it. Reads the controller's HTTP API and the "
        "decisions topic. Markdown goes to stdout; --html FILE writes one page that loads "
        "nothing from anywhere.",
    )
    _add_subject(sub)
    form = sub.add_mutually_exclusive_group()
    form.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML page")
    form.add_argument("--markdown", action="store_true", help="print Markdown (the default)")
    form.add_argument("--json", action="store_true", help="print the report's data as JSON")
    add_url(sub)
    sub.add_argument("--config", type=Path, metavar="FILE", help="controller settings YAML")
    sub.add_argument("--bootstrap", metavar="HOST:PORT", help="broker list, overrides --config")
    sub.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="give up after this (30)"
    )
    sub.add_argument(
        "--narrative",
        action="store_true",
        help="have the configured model (llm settings) open the report with a few sentences, "
        "kept only if every number in them is in the evidence",
    )
    add_deadline_arguments(
        sub, without="the report is printed without a narrative", scope="with --narrative, "
    )


def _add_subject(sub: argparse.ArgumentParser) -> None:
    """What is reported: a flag's rollout, or a holdout (since when, at what alpha), where."""
    sub.add_argument(
        "flag",
        metavar="FLAG",
        nargs="?",
        help="the flag whose current rollout to report: in every environment it has one in",
    )
    sub.add_argument(
        "--holdout",
        metavar="NAME",
        help="instead of a flag's rollout, report holdout NAME: everyone else against the units"
        " it keeps out, per flag naming it and over every flag together (in --environment, else"
        " the default one)",
    )
    sub.add_argument(
        "--since",
        metavar="TIME",
        help="with --holdout: only the rollouts started at or after TIME (RFC 3339 with an"
        " offset, or a date: midnight UTC), the releases of a period",
    )
    sub.add_argument(
        "--alpha",
        type=float,
        metavar="A",
        help="with --holdout: the chance of naming a regression the releases did not cause,"
        " over every comparison of the report (0.05)",
    )
    sub.add_argument(
        "--environment",
        metavar="ENV",
        type=environment_name,
        help="report only this environment's rollout (of a flag in several environments)",
    )


def environment_name(text: str) -> str:
    """``--environment``'s value: an environment's name, as the controller names them."""
    if not re.fullmatch(ENVIRONMENT_PATTERN, text):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is no environment name: a lower-case letter, then up to 31"
            " letters, digits, '-' and '_'"
        )
    return text
