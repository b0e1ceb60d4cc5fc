"""A pipeline run's state: its pipeline, each environment's step, the phase, the approvals.

Stored as one record per run (JSON: every part is a frozen pydantic model),
written with the decisions a transition makes, as a rollout is today. A
step only moves forward (pending → running → completed, or → a stop), so a
replayed event finds nothing to change. Pure.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field

from controller.core.common import AppliedDigest, FlagKey, MessageId
from controller.core.release.approvals import Ledger
from controller.core.release.environments import MAX_ENVIRONMENTS, EnvironmentName, Frozen
from controller.core.release.pipeline import Pipeline


class StepStatus(StrEnum):
    PENDING = "pending"
    """Not started: its predecessor has not completed, or its gate is shut."""
    RUNNING = "running"
    """Its rollout runs (or is paused) in its environment."""
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    KILLED = "killed"

    @property
    def stopped(self) -> bool:
        """A rollback, abort or kill: the pipeline stops here."""
        return self in (StepStatus.ROLLED_BACK, StepStatus.ABORTED, StepStatus.KILLED)


class RunPhase(StrEnum):
    RUNNING = "running"
    """A step runs, or the next one waits for its gate."""
    COMPLETED = "completed"
    """Every environment completed."""
    STOPPED = "stopped"
    """An environment's rollout was rolled back, aborted or killed; nothing more starts."""


class StepState(Frozen):
    """One environment's step in a run."""

    environment: EnvironmentName
    status: StepStatus = StepStatus.PENDING
    rollout_id: MessageId | None = Field(
        default=None, description="The rollout the run started here (see rollout_id_of)."
    )
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    ending: Annotated[str, Field(max_length=500)] = ""


class PipelineState(Frozen):
    """One run of a pipeline for one flag."""

    run_id: MessageId
    pipeline: Pipeline = Field(
        description="As it was when the run began; a redefinition does not change a run."
    )
    flag: FlagKey
    phase: RunPhase = RunPhase.RUNNING
    steps: Annotated[tuple[StepState, ...], Field(min_length=1, max_length=MAX_ENVIRONMENTS)]
    approvals: Ledger = Ledger()
    stopped_at: EnvironmentName | None = None
    held: str | None = Field(
        default=None,
        max_length=600,
        description="Why the next step does not start: a completed step's late evidence "
        "regressed (an operator decides; nothing starts by itself).",
    )
    started_at: AwareDatetime
    updated_at: AwareDatetime
    applied: AppliedDigest | None = Field(
        default=None, description="The digest `rolloutctl apply` started it from; none: by hand."
    )

    def step_of(self, environment: str) -> tuple[int, StepState] | None:
        for i, step in enumerate(self.steps):
            if step.environment == environment:
                return i, step
        return None

    @property
    def next_pending(self) -> int | None:
        """The step that starts next: the first pending one after the last started."""
        for i, step in enumerate(self.steps):
            if step.status is StepStatus.PENDING:
                return i
        return None

    def with_step(self, index: int, step: StepState, now: datetime) -> PipelineState:
        steps = (*self.steps[:index], step, *self.steps[index + 1 :])
        return self.model_copy(update={"steps": steps, "updated_at": now})


def rollout_id_of(run_id: str, environment: str) -> str:
    """The rollout id a run gives its step in ``environment``: the same on every replay,
    so a restart between deciding and starting starts the same rollout, once."""
    return hashlib.sha256(f"{run_id}/{environment}".encode()).hexdigest()[:32]


def decision_key(run_id: str, *parts: str) -> str:
    """A decision's key: the run, and what was decided (``production/start``)."""
    return "/".join((run_id, *parts))
