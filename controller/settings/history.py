"""The gate history's settings: how often a point is kept, how many, for how long."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HistorySettings(BaseModel):
    """The gate history the console and ``/rollouts/{flag}/history`` draw from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Record gate history at all.")
    min_interval_seconds: float = Field(
        default=5.0,
        ge=0.05,
        le=3600,
        description="At most one point per rollout this often (a change of verdict is always "
        "kept); the interval grows as a stage ages.",
    )
    points_per_stage: int = Field(
        default=60,
        ge=10,
        le=10_000,
        description="Aimed-for points per stage: past min_interval_seconds times this, the "
        "interval is the stage's age divided by it.",
    )
    max_points_per_stage: int = Field(
        default=500,
        ge=10,
        le=100_000,
        description="Hard cap on stored points per stage; the oldest go first.",
    )
    decisions_kept: int = Field(
        default=200, ge=1, le=10_000, description="Decisions and alerts kept per flag."
    )
    alerts_kept: int = Field(
        default=200, ge=1, le=10_000, description="Recent alerts kept for the console."
    )
    ttl_seconds: int = Field(
        default=14 * 24 * 3600,
        ge=60,
        description="A flag's history expires this long after its last write.",
    )
