"""What the read side shows: the models of the HTTP read API, ``rolloutctl`` and the console.

``GET /flags`` serves :class:`FlagStates`, ``GET /rollouts`` a
:class:`RolloutList` of :class:`RolloutStatus`, ``GET /rollouts/{flag}`` one
:class:`RolloutStatus` and ``GET /rollouts/{flag}/history`` a
:class:`RolloutHistory`; the console's list shows :class:`RolloutRow`. The
daemon builds these and the clients parse them, so both sides read one
definition; ``schemas/http-*.schema.json`` are generated from them
(``rollout-controller schemas export``), like the topics' contracts.

The fields are in the order they are served, and the values keep the types
they always had (times as ISO 8601 strings, percents as floats), so the JSON
is byte for byte what it was when these were plain dictionaries. A gate's
``evidence`` stays an open object: its shape is the gate's (see
:func:`controller.core.gate.evaluate`), the same object decisions carry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from controller.core.audience import AudienceRule
from controller.core.messages import FlagStatus
from controller.core.moving import NextMove
from controller.core.targeting import Ring


class _View(BaseModel):
    # A client reads a newer controller's answer: fields it does not know are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")

    def served(self) -> dict[str, Any]:
        """The object as served: every field, in order, values as they are."""
        return self.model_dump()


class StagePosition(_View):
    """Where a rollout stands in its plan, as numbers and in words."""

    index: int = Field(description="The stage, from 0.")
    number: int = Field(description="The stage, from 1.")
    of: int = Field(description="How many stages the plan has.")
    percent: float
    label: str = Field(description='In words, e.g. "stage 2/5 (5%)".')


class RolloutView(_View):
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
    verdict_reason: str | None
    evidence: dict[str, Any] = Field(
        default_factory=dict,
        description="What the verdict was reached on: arms, guardrails, srm (as in decisions).",
    )


class RolloutStatus(RolloutView):
    """``GET /rollouts/{flag}`` and each of ``GET /rollouts``: a rollout with a fresh gate view."""

    stale: bool = Field(
        default=False, description="Completed long ago: the flag can leave the code."
    )


class RolloutList(_View):
    """``GET /rollouts``: every rollout, by flag."""

    rollouts: list[RolloutStatus]


class RolloutRow(RolloutView):
    """A rollout in the console's list, with its health from the last gate point."""

    active: bool
    health: str = Field(description="failed, ended, attention, done, idle or healthy.")
    health_reason: str


class FlagStateView(_View):
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
    key_id: str | None = Field(default=None, description="Absent when unsigned.")
    sig: str | None = Field(default=None, description="Absent when unsigned.")

    def served(self) -> dict[str, Any]:
        """Without ``key_id`` and ``sig`` unsigned, nor ``audience`` and ``rings`` untargeted."""
        left_out = set()
        if self.key_id is None and self.sig is None:
            left_out |= {"key_id", "sig"}
        if self.rings is None:
            left_out |= {"audience", "rings"}
        return self.model_dump(mode="json", by_alias=True, exclude=left_out or None)


class FlagStates(RootModel[list[FlagStateView]]):
    """``GET /flags``: the current state of every flag with a rollout, by flag."""

    model_config = ConfigDict(frozen=True)


class ArmCounts(_View):
    units: int
    exposures: int
    requests: int
    errors: int
    conversions: int


class GuardrailPoint(_View):
    delta: float | None
    lower: float | None
    upper: float | None
    p_value: float
    tolerance: float
    direction: Literal["lower_is_better", "higher_is_better"]
    regressed: bool


class HistoryPoint(_View):
    """One recorded gate evaluation."""

    ts_ms: int
    ts: str = Field(description="ISO 8601.")
    stage: int
    percent: float
    verdict: str
    srm_p: float
    arms: dict[str, ArmCounts]
    guardrails: dict[str, GuardrailPoint | None] = Field(
        description="Per metric its test; null while the metric had too little data."
    )


class StageHistory(_View):
    stage: int
    percent: float
    points: list[HistoryPoint]


class RolloutHistory(_View):
    """``GET /rollouts/{flag}/history``: the current rollout's gate points, stage by stage."""

    flag: str
    rollout_id: str
    stages: list[StageHistory]


READ_API_MODELS: dict[str, Any] = {
    "http-flags": FlagStates,
    "http-rollouts": RolloutList,
    "http-rollout": RolloutStatus,
    "http-rollout-history": RolloutHistory,
}
"""Each answer of the HTTP read API by the file stem of its JSON Schema in ``schemas/``."""
