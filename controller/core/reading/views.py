"""What the read side shows: the models of the HTTP read API, ``rolloutctl`` and the console.

``GET /flags`` serves :class:`FlagStates`, ``GET /rollouts`` a
:class:`RolloutList` of :class:`RolloutStatus`, ``GET /rollouts/{flag}`` one
:class:`RolloutStatus` and ``GET /rollouts/{flag}/history`` a
:class:`~controller.core.reading.served_history.RolloutHistory`; the console's list shows
:class:`RolloutRow`. The daemon builds these and the clients parse them, so both sides read one
definition; ``schemas/http-*.schema.json`` are generated from them
(``rollout-controller schemas export``), like the topics' contracts.

The fields are in the order they are served, and the values keep the types
they always had (times as ISO 8601 strings, percents as floats), so the JSON
is byte for byte what it was when these were plain dictionaries. A gate's
``evidence`` stays an open object: its shape is the gate's (see
:func:`controller.core.machine.gate.evaluate`), the same object decisions carry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel

from controller.core.reading.commands import Steering, steering
from controller.core.reading.evidence_view import HoldoutCheck, read_back
from controller.core.reading.guardrail_state import LimitsGated
from controller.core.reading.served_history import RolloutHistory, ServedView
from controller.core.reading.stage_power import StageNeeds, stage_needs
from controller.core.reading.wording import position_label, stage_position
from controller.core.rollouts import NextMove, Phase, Rollout, Verdict, Window, next_move
from controller.core.rules import AudienceRule, Ring
from controller.core.wire import (
    ArmValues,
    FlagStatus,
    Holdout,
    Prerequisite,
    RolloutEvidence,
)


class StagePosition(ServedView):
    """Where a rollout stands in its plan, as numbers and in words."""

    index: int = Field(description="The stage, from 0.")
    number: int = Field(description="The stage, from 1.")
    of: int = Field(description="How many stages the plan has.")
    percent: float
    label: str = Field(description='In words, e.g. "stage 2/5 (5%)".')


class RolloutView(ServedView):
    """A rollout for people and dashboards: where it is and what the gate sees.

    The fields with a default are those an older controller did not serve:
    ``rolloutctl`` and the console read its answer with them left at the
    default. The daemon always serves every field, so the schema, which says
    what is served, counts them as required all the same.
    """

    model_config = ConfigDict(
        json_schema_mode_override="serialization",
        json_schema_serialization_defaults_required=True,
    )

    flag: str
    rollout_id: str
    plan: str
    phase: str
    pause_reason: str | None = None
    stage: int
    stages: int
    at_stage: StagePosition | None = Field(
        default=None, description="Null only from an older controller."
    )
    stage_percents: list[float] = Field(default_factory=list)
    percent: float = Field(description="The share served treatment now.")
    flag_version: int
    started_at: str = Field(default="", description="ISO 8601.")
    stage_started_at: str = Field(default="", description="ISO 8601.")
    watch_until: str | None = Field(
        default=None, description="ISO 8601; set while the holdback is watched."
    )
    window_wait: str | None = Field(
        default=None, description="Why an advance waits for a release window."
    )
    next_move: NextMove | None = Field(
        default=None,
        description="Why the rollout is not moving, and when it may next move (null: it moves).",
    )
    time_in_stage_s: float
    min_duration_s: float
    min_units_per_arm: int
    verdict: str | None = Field(description="The gate's view now; null when not gated.")
    verdict_reason: str | None = Field(
        description="Why the gate sees so; once finished, why the rollout ended."
    )
    evidence: Annotated[RolloutEvidence, BeforeValidator(read_back)] = Field(
        default_factory=RolloutEvidence,
        description="What the verdict was reached on: arms, guardrails, srm (as in decisions);"
        " once finished, the evidence of the decision that ended it.",
    )
    ended_at: str | None = Field(
        default=None,
        description="ISO 8601; when it finished (its time in stage stops there). Null: not"
        " finished, or finished before this was kept.",
    )
    values: ArmValues | None = Field(
        default=None, description="The arms' typed values the plan declares; null: false and true."
    )
    applied: str | None = Field(
        default=None,
        description="SHA-256 of the desired rollout `rolloutctl apply` started it from; null: "
        "started by hand.",
    )
    steered: list[Steering] = Field(
        default_factory=list,
        description="Operators' commands that changed its course while it ran (a promote to a "
        "next stage, a pause, a resume), oldest first, the last few.",
    )
    needs: StageNeeds | None = Field(
        default=None,
        description="What the running stage still needs before the gate lets it advance; null"
        " when the gate does not hold it.",
    )
    holdout: HoldoutCheck | None = Field(
        default=None, description="The plan's holdout, its units against those expected."
    )
    limits_gated: LimitsGated | None = Field(
        default=None,
        description="Completed: the gate's pass of the last stage its limits gated (no"
        " concurrent control) for a minimum time of its own, which its limits are said from;"
        " null otherwise.",
    )

    def label(self) -> str | None:
        """The stage it is at in words, as every output names it: ``stage 3/5 (25%)``."""
        at = self.at_stage
        if at is not None:
            return position_label(at.index, at.of, at.percent)
        return position_label(self.stage, self.stages, None)


class RolloutStatus(RolloutView):
    """``GET /rollouts/{flag}`` and each of ``GET /rollouts``: a rollout with a fresh gate view."""

    stale: bool = Field(
        default=False, description="Completed long ago: the flag can leave the code."
    )


class RolloutList(ServedView):
    """``GET /rollouts``: every rollout, by flag."""

    rollouts: list[RolloutStatus]


class RolloutRow(RolloutView):
    """A rollout in the console's list, with its health from the last gate point."""

    active: bool
    health: str = Field(
        description="failed, ended, attention, watching, undecided, done, idle or healthy."
    )
    health_reason: str


class FlagStateView(ServedView):
    """A flag's state as apps poll it from ``GET /flags``: the flag-state message's fields."""

    flag: str
    version: int
    status: FlagStatus
    percent: float
    salt: str
    rollout_id: str | None
    stage: int | None
    audience: AudienceRule | None = Field(default=None, description="Absent when untargeted.")
    rings: list[Ring] | None = Field(default=None, description="Absent when untargeted.")
    values: ArmValues | None = Field(
        default=None, description="The arms' typed values; absent: false and true."
    )
    requires: list[Prerequisite] | None = Field(
        default=None, description="The flags it requires; absent: none."
    )
    holdout: Holdout | None = Field(default=None, description="The holdout it names; absent: none.")
    key_id: str | None = Field(default=None, description="Absent when unsigned.")
    sig: str | None = Field(default=None, description="Absent when unsigned.")

    def served(self) -> dict[str, object]:
        """Without ``key_id`` and ``sig`` unsigned, ``audience`` and ``rings`` untargeted, nor
        ``values`` undeclared, nor ``requires`` without prerequisites, nor ``holdout``
        without one."""
        left_out = {k for k in ("values", "requires", "holdout") if getattr(self, k) is None}
        if self.key_id is None and self.sig is None:
            left_out |= {"key_id", "sig"}
        if self.rings is None:
            left_out |= {"audience", "rings"}
        return self.model_dump(mode="json", by_alias=True, exclude=left_out or None)


class FlagStates(RootModel[list[FlagStateView]]):
    """``GET /flags``: the current state of every flag with a rollout, by flag."""

    model_config = ConfigDict(frozen=True)


READ_API_MODELS: dict[str, type[BaseModel]] = {
    "http-flags": FlagStates,
    "http-rollouts": RolloutList,
    "http-rollout": RolloutStatus,
    "http-rollout-history": RolloutHistory,
}
"""Each answer of the HTTP read API by the file stem of its JSON Schema in ``schemas/``."""


def describe(
    rollout: Rollout,
    verdict: Verdict | None,
    now: datetime,
    team_windows: tuple[Window, ...] = (),
) -> RolloutView:
    """A rollout's state for people and dashboards: where it is and what the gate sees.

    ``verdict`` is the gate's current view of the stage (None once the rollout
    finished); its evidence carries the per-arm counts and the guardrail bounds.
    A finished rollout shows instead the reason and evidence of the decision that
    finished it, and its time in stage stops at its end.
    ``team_windows`` are the settings' release windows, for a plan that names
    none: with them a window wait says when the window opens.
    """
    move = next_move(rollout, verdict, now, team_windows)
    stage = rollout.plan.stages[rollout.stage]
    ended = rollout.ended
    said = verdict or ended  # a finished rollout: the decision that finished it
    fields = {
        "flag": rollout.flag,
        "rollout_id": rollout.rollout_id,
        "plan": rollout.plan.name,
        "phase": rollout.phase.value,
        "pause_reason": rollout.pause_reason.value if rollout.pause_reason else None,
        "stage": rollout.stage,
        "stages": len(rollout.plan.stages),
        "at_stage": stage_position(rollout),
        "stage_percents": [s.percent for s in rollout.plan.stages],
        "percent": rollout.percent,
        "flag_version": rollout.flag_version,
        "started_at": rollout.started_at.isoformat(),
        "stage_started_at": rollout.stage_started_at.isoformat(),
        "watch_until": rollout.watch_until.isoformat() if rollout.watch_until else None,
        "window_wait": rollout.window_wait,
        "next_move": move,
        "time_in_stage_s": round(
            (rollout.clock_stop(now) - rollout.stage_started_at).total_seconds(), 1
        ),
        "min_duration_s": stage.min_duration.total_seconds(),
        "min_units_per_arm": stage.min_units_per_arm,
        "verdict": None if verdict is None else verdict.kind.value,
        "verdict_reason": None if said is None else said.reason,
        "evidence": RolloutEvidence.of_gate(verdict.evidence)
        if verdict
        else (ended.evidence if ended else RolloutEvidence()),
        "ended_at": None if ended is None else ended.at.isoformat(),
        "values": rollout.plan.arm_values,
        "applied": rollout.applied,
        "steered": [steering(kept) for kept in rollout.steered],
        "needs": stage_needs(rollout, verdict, now),
        "limits_gated": LimitsGated.of(kept.evidence)
        if (kept := rollout.limits_gated) and rollout.phase is Phase.COMPLETED
        else None,
    }
    return RolloutView.model_validate(fields)
