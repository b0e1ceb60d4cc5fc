"""The HTTP API's bodies that no published model describes yet: refusals, probes, the event
intake's batch and answer, segments over HTTP, app keys, webhook answers. (A pipeline run's
answer is the core's own model, :class:`controller.core.reading.PipelineRun`.)

Each model says what a route of :mod:`controller.adapters` writes, field for field, so the
OpenAPI document (and schemathesis, which holds the live daemon to it) can check the answers.
The answers the read API already publishes (``http-*.schema.json``) keep their own models.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.core.common import Actor, AppliedDigest, EnvironmentName, MessageId
from controller.core.trust import AppKeyId, AppKeyName, Scope
from controller.core.wire import Event, PartData, SegmentRecord


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Refusal(Closed):
    """A refused request: why, in one line."""

    error: str = Field(description="Why the request was refused.")


class DependencyDown(Closed):
    """Redis or the broker did not answer: which one, at which address, under which setting."""

    error: Literal["a dependency is unavailable"]
    reason: str = Field(description="The readiness check's reason, or the error's own.")


class Health(Closed):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether this instance is ready, and the partitions it owns (the Collector's ingests'
    too, as ``<role>_partitions``, where OTLP is on)."""

    model_config = ConfigDict(extra="allow")

    ready: bool
    reason: str | None = Field(default=None, description="Why not ready; absent when ready.")
    starting: bool | None = Field(default=None, description="Still starting its dependencies.")
    partitions: int | None = Field(default=None, description="Events partitions owned.")
    events_partitions: list[int] | None = None
    events_partitions_waiting: list[int] | None = Field(
        default=None, description="Assigned but not ingested now (claimed, fenced, replaying)."
    )
    commands_partitions: list[int] | None = None


class EventBatch(Closed):
    """``POST /v1/events``: at most ``http.intake_max_events`` events (500 by default) in a
    body of at most ``http.intake_max_body_bytes`` (1 MiB by default); a larger batch is a 413.
    """

    events: Annotated[list[Event], Field(min_length=1)]


class IntakeAccepted(Closed):
    """Every event sent was acknowledged by the broker."""

    accepted: int = Field(ge=1, description="The batch's events.")
    sent: int = Field(ge=0, description="Those sent now.")
    duplicates: list[MessageId] = Field(
        description="Ids accepted before with the same content, not sent again (first 500)."
    )
    duplicate: bool = Field(description="Every event was accepted before.")
    reason: str


class EventError(Closed):
    index: int = Field(ge=0, description="The event's place in the batch.")
    reason: str = Field(description="The reason, as ingest's dead letters name it.")
    detail: str


class IntakeRefusal(Closed):
    """A refused batch: nothing of it was counted."""

    error: str
    errors: list[EventError] | None = Field(
        default=None, description="400 for invalid events: the first 20 refused, by index."
    )
    changed: list[MessageId] | None = Field(
        default=None, description="409: ids accepted before with other content (first 500)."
    )


class SegmentListed(Closed):
    name: str
    version: int = Field(ge=0)
    kind: Literal["rule", "ids"]
    count: int | None = Field(default=None, ge=0, description="An id list's size.")


class SegmentList(Closed):
    segments: list[SegmentListed]


class SegmentAnswer(SegmentRecord):
    """A segment's record as the segments topic carries it, with its id list's parts."""

    part_data: list[PartData] = Field(description="The id list's parts' data, in order.")


class ShownAppKey(Closed):
    """A key as ``GET /app-keys`` shows it: never its secret nor the secret's hash."""

    id: AppKeyId
    name: AppKeyName
    scopes: list[Scope]
    client: bool
    environment: EnvironmentName | None
    created_ms: int
    created_by: Actor
    revoked_ms: int | None
    revoked_by: Actor | None
    applied: AppliedDigest | None = Field(
        default=None,
        description="SHA-256 of the desired object `rolloutctl apply` last sent for it; "
        "null where it was made by hand (docs/gitops.md).",
    )


class AppKeyList(Closed):
    keys: list[ShownAppKey] = Field(description="Oldest first.")


class WebhookAnswer(Closed):
    """What became of a monitor's webhook delivery."""

    monitor: str | None = None
    status: str = Field(description="The incident's status; ``ignored`` for other events.")
    flags: list[str] | None = Field(default=None, description="The flags mapped to it.")
    result: Literal["accepted", "duplicate"] | None = None
    reason: str
