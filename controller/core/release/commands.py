"""The signed command that starts a release pipeline for a flag (``type: pipeline``).

``rolloutctl pipeline start FLAG --pipeline FILE`` sends it on the commands
topic, signed as every operator command is. It carries the pipeline (checked
by :func:`~controller.core.release.checks.parse_pipeline` against the
environments and roles the controller has), bounded in depth and size as a
plan is. The run it starts is named by the command's id, so the same command
read again starts nothing new. An approval of a pipeline's step is today's
``approve`` command naming the step's environment. Pure.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import orjson
from pydantic import Field, StringConstraints

from controller.core.common import AppliedDigest, BoundedPlan, PlainFlagKey
from controller.core.wire import JsonObject, SignedCommand

PIPELINE_TYPE = "pipeline"


class PipelineCommand(SignedCommand):
    """A signed operator command about a flag's release pipeline."""

    type: Literal["pipeline"]
    action: Literal["start"] = Field(description="`start`: run the pipeline for the flag.")
    flag: PlainFlagKey = Field(description="The flag's own key; each step acts in its environment.")
    pipeline: BoundedPlan = Field(
        description="The pipeline: environments in order, their plans, overrides and gates "
        "(docs/rollouts.md, 'Release pipelines')."
    )
    applied: AppliedDigest | None = Field(
        default=None,
        description="Sent by `rolloutctl apply`: SHA-256 of the desired rollout by pipeline, "
        "kept with the run it starts.",
    )
    sig: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Base64 Ed25519 signature over the canonical command without `sig`.",
    )

    actor_follows: ClassVar[str] = "pipeline"


def pipeline_command(value: bytes) -> tuple[PipelineCommand, JsonObject] | None:
    """The pipeline command in a record of the commands topic, with its raw JSON (what its
    signature covers); None for a record of another type. Raises ``ValidationError`` or
    ``orjson.JSONDecodeError`` for a pipeline command that breaks the contract."""
    loaded = orjson.loads(value)
    if not isinstance(loaded, dict) or loaded.get("type") != PIPELINE_TYPE:
        return None
    raw: JsonObject = loaded
    return PipelineCommand.model_validate(raw), raw
