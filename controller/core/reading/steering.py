"""How the read API shows the commands operators steered a running rollout with.

A promote to a next stage, a pause, a resume: kept with the rollout
(:attr:`~controller.core.rollouts.Rollout.steered`) and served with its status, so that
``rolloutctl diff`` can say a live rollout is not where its files put it, and who moved it,
when and why. Pure.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from controller.core.rollouts import Ending


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
