"""A release pipeline run as ``GET /pipelines/{flag}`` serves it: the typed view.

:func:`.pipeline_view` builds a :class:`PipelineRun`; the daemon serves its JSON,
and every reader (``rolloutctl pipeline status``, the console's pipeline page,
the report across environments, the MCP server, ``rolloutctl apply``) reads the
same model back, parsed once where the answer comes in. The OpenAPI document
describes the answer from these models.

Closed and frozen: a field the model does not declare is refused, so an answer
of another shape is an error that says which field, never a ``KeyError`` deep
in a reader. Written as served since the first version: a step without an
approval has no ``approvals`` key, and ``applied`` follows ``updated_at``.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from controller.core.common import AppliedDigest, EnvironmentName
from controller.core.release import RunPhase, StepStatus


class Closed(BaseModel):
    """A part of the served run: immutable, and no field it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class PipelineRollout(Closed):
    """The rollout an environment's step started, where it is now."""

    phase: str
    stage: int = Field(ge=0)
    stages: int = Field(ge=1)
    label: str
    percent: float = Field(ge=0, le=100)


class ApprovalGiven(Closed):
    operator: str
    key_id: str
    role: str
    at: str = Field(description="ISO 8601.")


class PipelineApprovals(Closed):
    needed: dict[str, int] = Field(description="Approvals needed, by role.")
    missing: dict[str, int] = Field(description="Approvals still missing, by role.")
    approved: dict[str, list[str]] = Field(description="Who approved, by role.")
    given: list[ApprovalGiven]
    expires_after: str
    summary: str


class PipelineStep(Closed):
    """One environment's step of the run."""

    environment: EnvironmentName
    key: str | None = Field(description="The environment's rollout key, where shown.")
    status: StepStatus
    plan: str
    rollout_id: str | None
    started_at: str | None
    ended_at: str | None
    ending: str
    rollout: PipelineRollout | None
    soak: str | None
    windows: int = Field(ge=0)
    gate: str | None = Field(description="What must hold before it starts; none for the first.")
    approvals: PipelineApprovals | None = Field(
        default=None,
        description="Absent where the step needs no approval.",
        exclude_if=lambda approvals: approvals is None,
    )


class PipelineNext(Closed):
    environment: EnvironmentName
    open: bool
    waiting_for: list[str]


class PipelineRun(Closed):
    """A flag's newest release pipeline run, as ``rolloutctl pipeline status`` shows it."""

    run_id: str
    pipeline: str
    flag: str
    phase: RunPhase
    stopped_at: EnvironmentName | None
    started_at: str = Field(description="ISO 8601.")
    updated_at: str = Field(description="ISO 8601.")
    environments: list[PipelineStep]
    next: PipelineNext | None
    applied: AppliedDigest | None = Field(
        default=None,
        description="SHA-256 of the desired object `rolloutctl apply` last sent for it; "
        "null where it was made by hand (docs/gitops.md).",
    )

    @model_serializer(mode="wrap")
    def _as_served(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Its keys in the order served since ``applied`` was added: after ``updated_at``
        (the schema, which lists the fields, keeps it last)."""
        data = handler(self)
        if not isinstance(data, dict) or not {"applied", "updated_at"} <= data.keys():
            return data
        served: dict[str, object] = {}
        for key, value in data.items():
            if key != "applied":
                served[key] = value
            if key == "updated_at":
                served["applied"] = data["applied"]
        return served

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The fields' schema in both modes: what it writes is what it reads (the serializer
        only orders the keys)."""
        if handler.mode == "serialization":
            core_schema = cast(
                "CoreSchema", {k: v for k, v in core_schema.items() if k != "serialization"}
            )
        return handler(core_schema)
