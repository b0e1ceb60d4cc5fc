"""The arguments of ``rolloutctl mcp``: the MCP server that reads rollouts and proposes commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.ctl.options import add_url, broker_options

Subparsers = argparse._SubParsersAction

DEFAULT_HTTP_PORT = 8765


def add_mcp(commands: Subparsers[argparse.ArgumentParser]) -> None:
    sub = commands.add_parser(
        "mcp",
        parents=[broker_options()],
        help="serve an MCP server that reads rollouts and proposes unsigned commands",
        description="A Model Context Protocol server for agents: read rollouts, decisions, "
        "reports, pipelines and alerts, and propose pause, kill, promote and start as "
        "unsigned commands a person signs with `rolloutctl send --sign --file`. It holds no "
        "operator key and refuses to start with one. Over stdio unless --http.",
    )
    add_url(sub)
    sub.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    sub.add_argument("--host", default="127.0.0.1", help="with --http: address (127.0.0.1)")
    sub.add_argument(
        "--port",
        type=int,
        default=DEFAULT_HTTP_PORT,
        help=f"with --http: port ({DEFAULT_HTTP_PORT})",
    )
    sub.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per read (10)")
    # Taken only to be refused in words: a key handed to this server is a mistake to name.
    sub.add_argument("--key", type=Path, help=argparse.SUPPRESS)
