"""Where guardrails read Prometheus, and how long a query and a reading may take.

A plan's guardrail with ``source: prometheus`` is read from the server at
``url`` with PromQL instant queries. Without a ``url`` such a guardrail is
never read, so its stages hold (and alert) until one is set: a plan that
reads Prometheus never advances on data that was not there.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class PrometheusSettings(BaseModel):
    """The Prometheus server guardrails may read, with the bounds on every exchange."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = Field(
        default=None,
        max_length=2000,
        description="Base URL of the Prometheus server (e.g. http://prometheus:9090); none: off.",
    )
    bearer_token: SecretStr | None = Field(
        default=None,
        description="Sent as Authorization: Bearer (secret): RC_PROMETHEUS__BEARER_TOKEN.",
    )
    username: str | None = Field(default=None, max_length=200, description="Basic auth user.")
    password: SecretStr | None = Field(default=None, description="Basic auth password (secret).")
    query_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Deadline of one query, from its first byte sent to the last byte read;"
        " past it the query counts as failed (a slow or dripping server holds no gate).",
    )
    interval_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Each active rollout's Prometheus guardrails are read this often.",
    )
    settle_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="The first seconds of each stage left out of its Prometheus reads"
        " ({{window}} begins this long after the stage's start). At least the scrape"
        " interval: a new variant's series is then read from its second scrape, where"
        " increase() extrapolates every histogram bucket alike (docs/prometheus.md).",
    )
    max_age_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A reading older than this is stale: the gate holds until a fresh one.",
    )
    max_sample_age_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="An arm whose newest scraped sample is older than this, or an answer"
        " dated further than this from when it was asked, is missing: the stage holds and"
        " alerts. At least twice the scrape interval plus the scrape timeout (the default"
        " fits scrape intervals up to 25 s).",
    )
    alert_after_seconds: float = Field(
        default=60.0,
        ge=0,
        le=86400,
        description="A flag's Prometheus guardrails failing or unusable this long raise an"
        " alert naming the source (once, until they read again): an outage is alerted once"
        " its failed readings span this, so with 5 s readings one longer than about this"
        " plus 5 s.",
    )
    max_answer_bytes: int = Field(
        default=1_048_576,
        ge=1024,
        le=64 * 1024 * 1024,
        description="An answer larger than this is refused unread, as hostile.",
    )
    max_series: int = Field(
        default=1000, ge=1, le=10_000, description="An answer with more series is refused."
    )
    max_in_flight: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Queries in flight at once, over every flag (each on a kept connection).",
    )

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("bearer_token and username: choose one way to authenticate")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self
