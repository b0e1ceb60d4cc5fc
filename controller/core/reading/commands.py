"""Operators' commands as the read API tells of them: those that steered a running
rollout, and whether each of a set would be admitted now.

A promote to a next stage, a pause, a resume: kept with the rollout
(:attr:`~controller.core.rollouts.Rollout.steered`) and served with its status
(:class:`Steering`), so that ``rolloutctl diff`` can say a live rollout is not where its
files put it, and who moved it, when and why.

``POST /commands/check`` answers whether the controller would admit each of a set of
signed commands now, applying none (:class:`CommandChecks`). ``rolloutctl apply`` asks it
for every command of a directory before it sends the first, so a key whose roles allow
only part of the set sends nothing. The check is the one the command intake makes of the
same command (a known key, a valid signature, fresh, an environment served, the key's
roles allow it there); what it cannot foresee is what the command meets when it is
applied (the flag's state then, a key reloaded in between). Pure.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from controller.core.rollouts import Ending
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


class Steering(BaseModel):
    """One operator's command that changed a running rollout's course."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    action: str = Field(description="promote, pause or resume.")
    at: str = Field(description="ISO 8601.")
    actor: str | None = Field(default=None, description="Who sent it (null: not said).")
    reason: str = Field(default="", description="The reason it was sent with.")
    stage: str | None = Field(
        default=None, description='The stage it was sent at, in words: "stage 2/5 (5%)".'
    )


def steering(kept: Ending) -> Steering:
    """The view of one kept command."""
    at_stage, evidence = kept.evidence.at_stage, kept.evidence
    return Steering(
        action=kept.action,
        at=kept.at.isoformat(),
        actor=evidence.actor,
        reason=kept.reason,
        stage=at_stage.label if at_stage is not None else None,
    )
