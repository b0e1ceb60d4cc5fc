"""The options ``rolloutctl``'s subcommands share: signing, broker, controller, output."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.ctl.terminal import (
    DEFAULT_KEY_DIR,
    DEFAULT_URL,
    ENV_ACTOR,
    ENV_KEY,
    ENV_KEY_ID,
    ENV_TOKEN,
    ENV_URL,
)


def signing_options() -> argparse.ArgumentParser:
    """--key, --key-id, --actor and --reason: what a signed command needs."""
    common = argparse.ArgumentParser(add_help=False)
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
    return common


def broker_options() -> argparse.ArgumentParser:
    """--config and --bootstrap: where the commands topic is."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", type=Path, metavar="FILE", help="controller settings YAML (Kafka, topics)"
    )
    common.add_argument("--bootstrap", metavar="HOST:PORT", help="broker list, overrides --config")
    return common


def add_url(parser: argparse.ArgumentParser) -> None:
    """--url: where the controller's HTTP API is, for the subcommands that read it."""
    parser.add_argument(
        "--url",
        metavar="URL",
        help=f"controller HTTP address (default: ${ENV_URL}, {DEFAULT_URL}); "
        f"${ENV_TOKEN} is sent as its bearer token where the controller wants one",
    )


def output_options() -> argparse.ArgumentParser:
    """--json."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    return common
