"""What a pipeline run hears, and what it asks for: events in, actions out.

Events: an environment's rollout ended (:class:`RolloutEnded`: completed,
rolled back, aborted or killed), time passed (:class:`TimePassed`: a soak
elapsed or a window opened), an operator approved (:class:`Approve`), a key
was revoked (:class:`KeyRevoked`), a completed step's late evidence regressed
(:class:`LateRegression`). Actions: start a rollout in an
environment (:class:`StartRollout`), record a decision with its evidence
(:class:`Decision`), raise an alert (the rollouts' ``RaiseAlert``). Each
decision has a key made of the run and what was decided, the same on a
replay, so a store that writes a key once re-decides nothing after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from controller.core.release.approvals import Approval
from controller.core.release.state import PipelineState
from controller.core.rollouts import Plan, RaiseAlert
from controller.core.wire import PipelineEvidence, RolloutEnding

Ended = Literal["completed", "rolled_back", "aborted", "killed"]


@dataclass(frozen=True, slots=True)
class RolloutEnded:
    """The rollout ``rollout_id`` in ``environment`` finished (a kill may follow a completion)."""

    environment: str
    rollout_id: str
    outcome: Ended
    now: datetime
    reason: str = ""
    evidence: RolloutEnding = field(default_factory=RolloutEnding)


@dataclass(frozen=True, slots=True)
class TimePassed:
    """The clock: a soak may have elapsed, a window may have opened."""

    now: datetime


@dataclass(frozen=True, slots=True)
class Approve:
    """An authenticated ``approve`` of a step, its role already checked against the key."""

    approval: Approval
    now: datetime


@dataclass(frozen=True, slots=True)
class KeyRevoked:
    """An operator key left the registry: its pending approvals count no more."""

    key_id: str
    now: datetime


@dataclass(frozen=True, slots=True)
class LateRegression:
    """The completed rollout ``rollout_id`` in ``environment`` regressed on evidence counted
    after one of its stages passed: the run holds its next step."""

    environment: str
    rollout_id: str
    reason: str
    now: datetime


Event = RolloutEnded | TimePassed | Approve | KeyRevoked | LateRegression


@dataclass(frozen=True, slots=True)
class StartRollout:
    """Start ``plan`` for the run's flag in ``environment``, as rollout ``rollout_id``."""

    environment: str
    rollout_id: str
    plan: Plan
    key: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A pipeline decision: what, where, why, with its evidence; written once by ``key``."""

    key: str
    kind: str
    outcome: Literal["applied", "rejected", "waiting"]
    reason: str
    environment: str | None = None
    command_id: str | None = None
    evidence: PipelineEvidence = field(default_factory=PipelineEvidence)


Action = StartRollout | Decision | RaiseAlert
Step = tuple[PipelineState, list[Action]]
"""A run's new state, and what it asks for."""
