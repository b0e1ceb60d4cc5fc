"""``POST /commands/check``: whether the controller would admit each of a set of signed
commands now, answered without applying any.

``rolloutctl apply`` asks it for every command of a directory before it sends the first,
so a key whose roles allow only part of the set sends nothing. The check is the one the
command intake makes of the same command (a known key, a valid signature, fresh, an
environment served, the key's roles allow it there); what it cannot foresee is what the
command meets when it is applied (the flag's state then, a key reloaded in between).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from controller.core.wire import JsonObject

MAX_CHECKED_COMMANDS = 500
"""The most commands one check takes; ``rolloutctl`` asks in chunks of at most this many."""
MAX_CHECK_BYTES = 4 * 1024 * 1024
"""The largest body one check takes."""


class CommandCheckRequest(BaseModel):
    """Signed commands as they would be sent on the commands topic, each as its JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commands: Annotated[list[JsonObject], Field(min_length=1, max_length=MAX_CHECKED_COMMANDS)]


class CheckedCommand(BaseModel):
    """One command's answer: admitted, or why not."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    index: int = Field(ge=0, description="The command's place in the request.")
    id: str | None = Field(description="The command's id, as sent (null: none was read).")
    allowed: bool = Field(description="The controller would admit it now.")
    reason: str = Field(description="Why not; which role allows it, or empty, when allowed.")


class CommandChecks(BaseModel):
    """``POST /commands/check``'s answer: one result per command, in the request's order."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    results: list[CheckedCommand]
