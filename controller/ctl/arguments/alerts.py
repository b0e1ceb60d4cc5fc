"""The arguments of ``rolloutctl alerts``: forward alerts to a Slack-compatible webhook."""

from __future__ import annotations

import argparse
from pathlib import Path

Subparsers = argparse._SubParsersAction

ENV_WEBHOOK = "ROLLOUTCTL_SLACK_WEBHOOK"
DEFAULT_GROUP = "rolloutctl-alerts"
DEFAULT_STATE = "~/.local/state/rolloutctl/alerts-ledger.json"


def add_alerts(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "alerts",
        help="forward alerts to a Slack-compatible webhook",
        description="Consume the alerts topic and post each alert to a Slack-compatible "
        "incoming webhook, retrying while it is down. Delivered alert ids are kept in a "
        "state file, so a restart or a republished alert does not post twice (the one "
        "exception: a crash between the receiver's answer and that file's write).",
    )
    add_arguments(sub)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``rolloutctl alerts``."""
    parser.add_argument(
        "--slack-webhook",
        metavar="URL",
        help=f"incoming webhook URL (required; default: ${ENV_WEBHOOK}, which keeps it "
        "out of the process list)",
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="controller settings YAML (Kafka, topics)"
    )
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="broker list, overrides --config")
    parser.add_argument("--topic", metavar="NAME", help="alerts topic, overrides --config")
    parser.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        metavar="ID",
        help=f"consumer group (default: {DEFAULT_GROUP})",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        default=Path(DEFAULT_STATE).expanduser(),
        help=f"ledger of delivered alert ids (default: {DEFAULT_STATE})",
    )
    parser.add_argument(
        "--from",
        dest="start_from",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a new group starts reading (default: earliest)",
    )
