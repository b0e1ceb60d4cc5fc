"""How to reach Unleash, the flag platform a rollout may be served from.

A rollout whose plan names an Unleash feature (``backend: {unleash: {...}}``)
is served by Unleash: the controller writes the feature's ``flexibleRollout``
strategy and environment through the admin API. These settings say where that
API is and the defaults a plan may leave out; with no ``url`` no rollout can
use Unleash, and a plan that asks for it is refused when it starts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class UnleashSettings(BaseModel):
    """The Unleash admin API, and the defaults of the plans served from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        default=None,
        max_length=2000,
        description="Base URL of the Unleash server (e.g. http://unleash:4242); none: off.",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="An admin API token (secret): set RC_UNLEASH__ADMIN_TOKEN."
    )
    project: str = Field(
        default="default", min_length=1, max_length=100, description="Default project."
    )
    environment: str = Field(
        default="production", min_length=1, max_length=100, description="Default environment."
    )
    stickiness: str = Field(
        default="default",
        min_length=1,
        max_length=100,
        description="Default stickiness: the context field units are hashed on.",
    )
    create_features: bool = Field(
        default=True,
        description=(
            "Create a plan's feature when it does not exist yet, and the context fields"
            " a ring plan's constraints name."
        ),
    )
    sync_interval_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="Every flag's strategy is read back this often: the drift sweep.",
    )
    request_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description=(
            "Deadline of one admin API request, from its first byte sent to the last byte"
            " read: an answer that takes longer counts as Unleash unreachable."
        ),
    )
    max_concurrent_requests: int = Field(
        default=8,
        ge=1,
        le=64,
        description=(
            "Admin API requests in flight at once; when all are taken, turning an"
            " environment off goes first."
        ),
    )
    max_response_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=64 * 1024 * 1024,
        description="An admin API answer larger than this is refused as hostile.",
    )

    @property
    def enabled(self) -> bool:
        return self.url is not None
