"""The arguments of ``rolloutctl pipeline``: start a flag's release pipeline, see it, check one."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.ctl.options import add_url, broker_options, output_options, signing_options

Subparsers = argparse._SubParsersAction


def add_pipeline(commands: Subparsers[argparse.ArgumentParser]) -> None:
    pipeline = commands.add_parser(
        "pipeline",
        help="start a flag's release pipeline (dev, then staging, then production), or show it",
        description="A release pipeline moves one flag through environments in order, each "
        "with its plan; a step starts when the one before completed and its gate (soak, "
        "approvals, release window) is open, and a rollback or kill stops it there.",
    )
    verbs = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="VERB")
    start = verbs.add_parser(
        "start",
        parents=[signing_options(), broker_options(), output_options()],
        help="start the pipeline for FLAG",
        description="Sign and send the pipeline; exit 0 when its first environment started, "
        "3 with the reason (naming the field) when refused, 4 if no decision came in time.",
    )
    start.add_argument("flag", metavar="FLAG", help="the flag key")
    start.add_argument(
        "--pipeline", type=Path, required=True, metavar="FILE", help="the pipeline YAML"
    )
    start.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="wait this long (30)"
    )
    status = verbs.add_parser(
        "status",
        parents=[output_options()],
        help="each environment's state, what gates the next step, who still has to approve",
        description="Ask the controller's HTTP API for FLAG's newest pipeline run.",
    )
    status.add_argument("flag", metavar="FLAG", help="the flag key")
    add_url(status)
    validate = verbs.add_parser(
        "validate",
        parents=[output_options()],
        help="check pipeline files offline",
        description="Parse each pipeline as the controller would, without it: its fields, "
        "steps, plans and overrides, and whether each step's plan can work. The environments "
        "and approval roles are checked by the controller, against its config, at start. "
        "Exit 78 naming each offending field.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
