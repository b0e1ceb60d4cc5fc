"""``rolloutctl mcp``: a Model Context Protocol server that reads rollouts and only proposes.

It serves over stdio (an MCP client starts it as a child process) or, with
``--http``, over streamable HTTP. It reads the controller's HTTP API with
``$ROLLOUTCTL_TOKEN`` and the decisions and alerts topics, and holds no key
that could sign anything: it refuses to start when given an operator key
(``--key``, ``$ROLLOUTCTL_KEY``) or settings that carry the controller's own
signing key. Its tools are :mod:`controller.ctl.agent.tools`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.core.common import ConfigError
from controller.ctl.terminal import ENV_KEY, env_url, warn

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from controller.ctl.agent.reading import Reader

HOLDS_NO_KEY = (
    "rolloutctl mcp holds no key: it only proposes commands, for a person to sign with "
    "`rolloutctl send --sign`"
)


def run(args: argparse.Namespace) -> int:
    """Serve until the client leaves (stdio) or SIGINT/SIGTERM (HTTP)."""
    refuse_keys(args.key, os.environ.get(ENV_KEY))
    from controller.ctl.agent import reading  # noqa: PLC0415 - loads the broker client
    from controller.settings import load_settings  # noqa: PLC0415

    settings = load_settings(args.config)
    if settings.signing.enabled:
        raise ConfigError(f"{HOLDS_NO_KEY}; its settings carry signing.key or signing.key_file")
    kafka = settings.kafka
    if args.bootstrap:
        kafka = kafka.model_copy(update={"bootstrap_servers": args.bootstrap})
    reader = reading.Reader(env_url(args.url), kafka, settings.topics, timeout_s=args.timeout)
    server = _built(reader)
    if args.http:
        warn(f"serving MCP over streamable HTTP at http://{args.host}:{args.port}/mcp")
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run("stdio")
    return 0


def refuse_keys(given: Path | None, from_env: str | None) -> None:
    """A :class:`ConfigError` when this server is handed an operator key, either way."""
    if given is not None:
        raise ConfigError(f"{HOLDS_NO_KEY}; drop --key")
    if from_env:
        raise ConfigError(f"{HOLDS_NO_KEY}; unset {ENV_KEY} in its environment")


def _built(reader: Reader) -> MCPServer[Any]:
    try:
        from controller.ctl.agent import tools  # noqa: PLC0415 - mcp is an optional extra
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "mcp":
            raise
        raise ConfigError(
            "rolloutctl mcp needs the MCP SDK: pip install 'rollout-controller[mcp]'"
        ) from exc
    return tools.build(reader)
