"""``rolloutctl mcp``: an MCP server for agents that reads rollouts and only proposes commands."""

from controller.ctl.agent import serving

__all__ = ["serving"]
