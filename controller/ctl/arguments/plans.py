"""The arguments of ``rolloutctl plan validate`` (with the power preview) and ``plan draft``."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.ctl.arguments.models import add_deadline_arguments, add_model_arguments
from controller.ctl.options import output_options

Subparsers = argparse._SubParsersAction

DEFAULT_REQUESTS_PER_UNIT = 10.0
DEFAULT_DESIGN_EFFECT = 2.0
"""Assumed without --design-effect or --from-flag: ten requests a unit, moderately alike
(an intra-unit correlation of about 0.1); a unit of one request has a design effect of 1."""
RISKS = ("low", "medium", "high")
"""``plan draft --risk``: the core's risk levels, one template each (a test keeps the two in
step)."""


def add_plan(commands: Subparsers[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser("plan", help="work with rollout plans")
    verbs = plan.add_subparsers(dest="plan_command", required=True, metavar="VERB")
    validate = verbs.add_parser(
        "validate",
        parents=[output_options()],
        help="check plan files",
        description="Parse each plan as the controller would; print its stages, or the "
        "errors naming each offending field (exit 78). With --traffic or --from-flag, also "
        "print the smallest regression each stage detects with 80% power.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _add_query_arguments(validate)
    _add_power_arguments(validate)
    draft = verbs.add_parser(
        "draft",
        help="have the configured model draft a plan, for review",
        description="Ask the configured model (the llm settings: config file, LLM_BASE_URL) "
        "for a plan for the change, validate it and print it as commented YAML. Without a "
        "model, when it is known to be too small to draft a plan (below 1 B parameters: it "
        "is not asked), when it gives no plan within --deadline (30 s), or when its plan is "
        "invalid or unsafe, print the built-in template for the risk level and say why in "
        "one line on stderr. Nothing is started.",
    )
    _add_draft_arguments(draft)


def _add_query_arguments(parser: argparse.ArgumentParser) -> None:
    """Whether the plan's Prometheus queries parse (:mod:`controller.ctl.operate.plan_queries`)."""
    parser.add_argument(
        "--flag",
        metavar="KEY",
        help="the flag the plan is for: its key must be safe to fill into the plan's"
        " Prometheus queries",
    )
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        help="a Prometheus server that parses the plan's queries (default: prometheus.url"
        " from --config)",
    )
    parser.add_argument("--config", metavar="FILE", type=Path, help="controller settings YAML")


def _add_power_arguments(parser: argparse.ArgumentParser) -> None:
    """The power preview's options (:mod:`controller.ctl.operate.plan_power`)."""
    group = parser.add_argument_group(
        "power preview",
        "with --traffic or --from-flag, print the smallest regression each stage detects with"
        " 80% power at the end of its minimum",
    )
    group.add_argument(
        "--traffic", metavar="RATE", help="requests to the flag, all arms: 200/s, 900/min, 5e4/h"
    )
    group.add_argument(
        "--from-flag",
        metavar="FLAG",
        help="read the traffic, base rates and design effects from FLAG's rollout"
        " (the controller's HTTP API, --url)",
    )
    group.add_argument(
        "--url", metavar="URL", help="controller HTTP address for --from-flag ($ROLLOUTCTL_URL)"
    )
    group.add_argument(
        "--requests-per-unit",
        type=float,
        metavar="N",
        help=f"requests each unit sends in a stage (default {DEFAULT_REQUESTS_PER_UNIT:g})",
    )
    group.add_argument(
        "--design-effect",
        type=float,
        metavar="D",
        help="variance on units over variance as if requests were independent"
        f" (default {DEFAULT_DESIGN_EFFECT:g}, conservative; 1 for one request a unit)",
    )
    _add_unit_arguments(group)
    _add_base_arguments(group)


def _add_unit_arguments(group: argparse._ArgumentGroup) -> None:
    """Units unlike the rest, which decide what a small arm holds."""
    group.add_argument(
        "--heavy-units",
        metavar="SHARE:N",
        help="a share of units that each send N requests in a stage, within"
        " --requests-per-unit (1%%:1000): a small arm's power is averaged over how many land"
        " in it",
    )
    group.add_argument(
        "--failing-units",
        metavar="SHARE:RATE",
        help="a share of units that fail RATE of their requests, within --error-rate and"
        " behind --design-effect (2%%:50%%): a regression saturates them, and a small arm's"
        " power is averaged over how many land in it",
    )


def _add_base_arguments(group: argparse._ArgumentGroup) -> None:
    """The base rates a regression is measured from, and what counts as too coarse."""
    group.add_argument("--error-rate", metavar="SHARE", help="base error rate (default 1%%)")
    group.add_argument(
        "--conversion-rate", metavar="SHARE", help="base conversions per exposure (default 5%%)"
    )
    group.add_argument(
        "--latency", metavar="P50/P99", help="base latency in ms, median/p99 (default 100/300)"
    )
    group.add_argument(
        "--conversion-value",
        metavar="MEAN/CV",
        help="a conversion's value: its mean and its standard deviation over the mean"
        " (default 1/1; about 2.5 where values are log-normal with sigma 1.4)",
    )
    group.add_argument(
        "--max-detectable",
        metavar="SHARE",
        help="warn about a stage that detects no regression smaller than this (100%%)",
    )
    group.add_argument(
        "--strict", action="store_true", help="a stage over --max-detectable is an error"
    )


def _add_draft_arguments(sub: argparse.ArgumentParser) -> None:
    """The options of ``plan draft``."""
    sub.add_argument("--risk", required=True, choices=RISKS, help="how risky the change is")
    sub.add_argument(
        "--describe", required=True, metavar="TEXT", help="what the flag changes, in a sentence"
    )
    add_model_arguments(sub, timeout=False)
    # --timeout: its name when it bounded the model's answer alone (120 s by default)
    add_deadline_arguments(sub, "--timeout", without="the built-in template is printed")
    sub.add_argument("--no-model", action="store_true", help="print the built-in template")
