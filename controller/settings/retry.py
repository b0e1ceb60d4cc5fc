"""The one retry policy: how long to back off between tries of a call that may succeed later."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetrySettings(BaseModel):
    """Back-off between retries of Redis, Kafka, the flag backend and the app SDK's sends.

    Every retry loop of the controller and of the app SDK takes its delays from
    this policy (:func:`controller.kit.backoff.retry_backoff`): the first delay,
    doubled after each failure up to the longest.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    initial_seconds: float = Field(
        default=0.1, gt=0, le=60, description="First back-off after a failed try."
    )
    max_seconds: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Longest back-off; the delay doubles on each failure up to it.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.max_seconds < self.initial_seconds:
            raise ValueError("retry.max_seconds must be at least retry.initial_seconds")
        return self
