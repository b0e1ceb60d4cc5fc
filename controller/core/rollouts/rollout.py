"""The rollout's persisted state and what the state machine reads and emits.

A :class:`Rollout` is one value per flag, saved with compare-and-set. Timers
are absolute instants, so a restarted controller resumes exactly where it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from controller.core.rollouts.advice import AdvisorResult
from controller.core.rollouts.approval_ledger import Ledger
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.policy import Applied, PauseReason, Trigger
from controller.core.rollouts.windows import Window
from controller.core.rules import Ring, rings_of
from controller.core.wire import (
    CommandAction,
    EvidenceWait,
    FlagStatus,
    GateEvidence,
    RolloutEvidence,
    threshold,
)


class Phase(StrEnum):
    PENDING = "pending"
    """A start is scheduled (``Rollout.scheduled_at``); nothing is served yet."""
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    KILLED = "killed"

    @property
    def active(self) -> bool:
        """Running or paused: the rollout still owns the flag's percent."""
        return self in (Phase.RUNNING, Phase.PAUSED)

    @property
    def terminal(self) -> bool:
        return self in (Phase.COMPLETED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.KILLED)


def _read_back(raw: object) -> object:
    """A state saved by any controller: its evidence read by the tolerant reader."""
    return raw if isinstance(raw, RolloutEvidence) else RolloutEvidence.tolerant(raw)


class Ending(BaseModel):
    """A decision kept with its rollout so its status can say why: the one that finished it,
    or an operator's that changed its course while it ran (:attr:`Rollout.steered`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    action: str = Field(
        max_length=64, description="rollback, kill, abort or complete; promote, pause or resume."
    )
    kind: str = Field(max_length=64, description="Who decided: gate, command, monitor, ...")
    reason: str
    evidence: Annotated[RolloutEvidence, BeforeValidator(_read_back)] = Field(
        default_factory=RolloutEvidence,
        description="The deciding decision's evidence, as published.",
    )


class Rollout(BaseModel):
    """Everything the controller knows about one flag's current rollout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flag: str
    rollout_id: str
    plan: Plan
    phase: Phase
    stage: int = Field(ge=0)
    stage_started_at: datetime
    salt: str
    flag_version: int = Field(ge=0, description="The flag-state version last published.")
    stage_versions: dict[int, list[int]] = Field(
        default_factory=dict, description="Flag-state versions published during each stage."
    )
    pause_reason: PauseReason | None = None
    stuck_alerted: bool = False
    dry_run_alerted: bool = Field(
        default=False, description="A dry-run guardrail's breach was alerted in this stage."
    )
    note: str = Field(default="", max_length=500, description="The operator's reason at start.")
    applied: str | None = Field(
        default=None,
        max_length=64,
        description="SHA-256 of the desired rollout `rolloutctl apply` started it from; "
        "none when started by hand.",
    )
    final_look_at: datetime | None = Field(
        default=None, description="When the stage's final look was taken and passed (once)."
    )
    advisor_hold_until: datetime | None = Field(
        default=None, description="The advisor held this stage; gate again after this."
    )
    watch_until: datetime | None = Field(
        default=None, description="In the plan's watch after the last stage, until this."
    )
    watch_alerted: bool = Field(default=False, description="A watch regression was alerted.")
    late_regression: str | None = Field(
        default=None,
        max_length=500,
        description="Completed, then a regression found in evidence counted after a stage "
        "passed: why (alerted once; a pipeline that follows holds its next step).",
    )
    completed_at: datetime | None = None
    stale_alerted: bool = Field(default=False, description="The stale-flag reminder was sent.")
    started_at: datetime
    updated_at: datetime
    window_wait: str | None = Field(
        default=None,
        max_length=500,
        description="Ready, waiting for a release window: why, and when it opens.",
    )
    warned: list[Trigger] = Field(
        default_factory=list,
        description="Triggers the plan's policy warned about in this stage, once each.",
    )
    scheduled_at: datetime | None = Field(
        default=None, description="Pending: the rollout starts at the first tick from then."
    )
    scheduled_by: str | None = Field(
        default=None, max_length=128, description="Pending: the id of the command scheduling it."
    )
    ended: Ending | None = Field(
        default=None, description="Finished: the decision that finished it (older states: none)."
    )
    steered: list[Ending] = Field(
        default_factory=list,
        description="Operators' commands that changed its course while it ran (a promote to a "
        "next stage, a pause, a resume), oldest first, the last few.",
    )
    limits_gated: Ending | None = Field(
        default=None,
        description="The gate's pass of the last stage its limits gated (no concurrent control)"
        " for a minimum time of its own: what a ring that completed showed of its limits.",
    )
    approvals: Ledger = Field(
        default_factory=Ledger,
        description="Approvals given to stages that need several (saved with their decisions).",
    )

    @property
    def percent(self) -> float:
        """The share of units that get treatment in this state."""
        if self.phase is Phase.COMPLETED:
            return 100.0
        if self.phase.active and self.watching and self.plan.watch is not None:
            return 100.0 - self.plan.watch.holdback_percent
        if self.phase.active:
            return self.plan.stages[self.stage].percent
        return 0.0

    @property
    def flag_status(self) -> FlagStatus:
        return {
            Phase.PENDING: FlagStatus.INACTIVE,
            Phase.RUNNING: FlagStatus.ROLLING_OUT,
            Phase.PAUSED: FlagStatus.PAUSED,
            Phase.COMPLETED: FlagStatus.COMPLETED,
            Phase.ROLLED_BACK: FlagStatus.ROLLED_BACK,
            Phase.ABORTED: FlagStatus.INACTIVE,
            Phase.KILLED: FlagStatus.KILLED,
        }[self.phase]

    @property
    def published(self) -> bool:
        """Whether apps hold a flag state of it: every state published has a new flag
        version, so version 0 has none (a start scheduled for a flag never served yet,
        which is unknown to apps until it starts)."""
        return self.flag_version > 0

    @property
    def watching(self) -> bool:
        """In the watch after the last stage (paused or not)."""
        return self.watch_until is not None

    def stale(self, now: datetime, after: timedelta) -> bool:
        """Completed for longer than ``after``: the flag should leave the code."""
        if self.phase is not Phase.COMPLETED:
            return False
        return now - (self.completed_at or self.updated_at) >= after

    def clock_stop(self, now: datetime) -> datetime:
        """Where its stage clock stands: ``now`` while it runs, frozen when it finished."""
        if not self.phase.terminal:
            return now
        if self.ended is not None:
            return self.ended.at
        return self.completed_at or self.updated_at

    def rings(self) -> list[Ring] | None:
        """The rings apps serve in this state (:mod:`targeting`); None for an untargeted plan.

        The rings of stages ``0..stage``; in a watch the last ring serves the
        watch's percent (everyone but the holdback).
        """
        if not self.plan.targeted:
            return None
        stages = self.plan.stages[: self.stage + 1]
        limits = [threshold(s.percent) for s in stages]
        if self.phase.active and self.watching and self.plan.watch is not None:
            limits[-1] = threshold(self.percent)
        return rings_of([s.audience for s in stages], limits)

    def stage_flag_versions(self) -> set[int]:
        """The flag versions whose events count for the current stage."""
        return set(self.stage_versions.get(self.stage, []))


class VerdictKind(StrEnum):
    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate concluded from the statistics, with the evidence."""

    kind: VerdictKind
    reason: str
    pause_reason: PauseReason | None = None
    evidence: GateEvidence = field(default_factory=GateEvidence)
    dry_run_breaches: tuple[str, ...] = ()
    """Dry-run guardrails that would have acted: alerted on, never acted upon."""
    applied: Applied | None = None
    """The health trigger behind this verdict and the policy entry that chose its kind."""
    untested: tuple[str, ...] = ()  # why each gating guardrail waits, as the gate words it


# -- inputs of the state machine --------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateInput:
    """A gate's statistical verdict, with the advisor's result when it was asked."""

    verdict: Verdict
    now: datetime
    advice: AdvisorResult | None = None
    advisor_mode: str = "off"
    advisor_hold: timedelta = timedelta(minutes=1)
    advisor_alert: bool = False
    """The advisor just became unavailable: raise the alert (once per outage)."""
    team_windows: tuple[Window, ...] = ()
    """The settings' release windows, for a plan that names none."""
    prerequisite: str | None = None
    """Why forward moves wait on the flags the plan requires (``prerequisite_wait``)."""


@dataclass(frozen=True, slots=True)
class OpinionInput:
    """An advisory opinion, arrived after the gate it was asked at had already decided.

    ``asked`` is the rollout as that gate saw it: the opinion is recorded against that
    rollout and stage, and changes nothing.
    """

    asked: Rollout
    decided_at: datetime
    advice: AdvisorResult
    now: datetime


@dataclass(frozen=True, slots=True)
class TickInput:
    now: datetime
    stale_after: timedelta | None = None
    """Remind once to remove a flag completed longer than this (None: never)."""
    team_windows: tuple[Window, ...] = ()
    """The settings' release windows, for a plan that names none."""
    waiting: EvidenceWait | None = None
    """What the stage's evidence waits for, as its gate saw it: a ``stuck`` alert names it."""


@dataclass(frozen=True, slots=True)
class CommandInput:
    """An operator command that already passed authentication and deduplication."""

    action: CommandAction
    flag: str
    command_id: str
    actor: str
    now: datetime
    reason: str = ""
    plan: Plan | None = None
    to_end: bool = False
    new_rollout_id: str = ""
    new_salt: str = ""
    at: datetime | None = None
    """With start: when it starts (from the command, or the plan's time box)."""
    key_id: str = ""
    """The operator key that signed the command: who decided, with ``actor``."""
    team_windows: tuple[Window, ...] = ()
    """The settings' release windows, for a plan that names none."""
    roles: tuple[str, ...] = ()
    """The roles the key holds that may approve in the command's environment: under which
    an ``approve`` counts for a stage that needs approvals by several people."""
    applied: str | None = None
    """With start: the digest ``rolloutctl apply`` sent (:attr:`Rollout.applied`)."""
    holder: str = ""
    """The person holding the key (the registry's ``holder``): an ``approve`` counts for
    them, once however many keys they hold; empty: the key is its own holder."""
    expect_version: int | None = None
    expect_rollout_id: str | None = None
    expect_stage: int | None = None
    """What the command was made against (None: anything): a proposal read the flag at this
    version, rollout and stage, and is refused once the flag has moved on."""
    version_floor: int = 0
    """With start: the highest version the topics have seen for the flag; the new rollout's
    versions are numbered above it (:func:`~controller.core.serving.versions.next_version`)."""
    start_stage: int = 0
    """With start: the stage it starts at (a flag rebuilt at its last decision after the
    store lost it, not from a command); its clock and evidence start there and then."""


@dataclass(frozen=True, slots=True)
class KeysRevokedInput:
    """Operator keys left the registry: their approvals still pending count no more."""

    key_ids: tuple[str, ...]
    now: datetime


@dataclass(frozen=True, slots=True)
class MonitorDownInput:
    """A monitor mapped to the flag went down: kill it, or (``hold``) pause it."""

    monitor: str
    incident_id: str
    now: datetime
    hold: bool = False


@dataclass(frozen=True, slots=True)
class MonitorUpInput:
    """A monitor mapped to the flag recovered; a killed flag stays off."""

    monitor: str
    incident_id: str
    now: datetime


@dataclass(frozen=True, slots=True)
class BackendDriftInput:
    """A person changed what the flag platform serves: pause, never fight them."""

    what: str
    now: datetime
    details: RolloutEvidence = field(default_factory=RolloutEvidence)
    """The feature, where, what changed and what the platform serves now."""


@dataclass(frozen=True, slots=True)
class CommandRefused:
    """A command refused before it could act: unsigned, signed with an unknown key or a
    signature that does not verify, stale, replayed, or with a plan that cannot work.

    It changes nothing; the machine records it as a rejected decision with the reason.
    A refused command is not recorded as applied: the same id, signed and fresh, may
    still run.
    """

    action: CommandAction
    flag: str
    command_id: str
    actor: str
    key_id: str | None
    """None for an unsigned command."""
    reason: str
    now: datetime


Input = (
    GateInput
    | OpinionInput
    | TickInput
    | CommandInput
    | CommandRefused
    | MonitorDownInput
    | MonitorUpInput
    | BackendDriftInput
    | KeysRevokedInput
)
