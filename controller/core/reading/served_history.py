"""The read API's served gate history: ``GET /rollouts/{flag}/history`` as clients read it.

:class:`RolloutHistory` holds a rollout's recorded gate points stage by stage (each a
:class:`HistoryPoint`); :meth:`RolloutHistory.read` reads a served history as a client
does, leaving out what breaks the contract and bounding what it reads. :class:`ServedView`
is the base of every model of the read API (:mod:`controller.core.reading.views`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from controller.core.reading.history import LimitPoint
from controller.core.reading.wording import position_label

MAX_SERVED_STAGES = 20
"""A plan has at most 20 stages: a served history's further entries are not read."""
MAX_SERVED_POINTS = 5_000
"""The most points read per stage of a served history (the latest): a stage keeps about
200 an hour."""


class ServedView(BaseModel):
    """A model of the HTTP read API, as the daemon serves it and a client reads it."""

    # A client reads a newer controller's answer: fields it does not know are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")

    def served(self) -> dict[str, object]:
        """The object as served: every field, in order, values as they are."""
        return self.model_dump()


class ArmCounts(ServedView):
    # Strict: a client reading a served history takes no boolean for a count.
    units: StrictInt
    exposures: StrictInt
    requests: StrictInt
    errors: StrictInt
    conversions: StrictInt


class GuardrailPoint(ServedView):
    delta: float | None
    lower: float | None
    upper: float | None
    p_value: float
    tolerance: float
    direction: Literal["lower_is_better", "higher_is_better"]
    regressed: bool


class ArmLatencyPoint(ServedView):
    """One arm's latency quantiles in ms at a gate; null without requests."""

    p50: float | None = Field(ge=0)
    p95: float | None = Field(ge=0)
    p99: float | None = Field(ge=0)


class HistoryPoint(ServedView):
    """One recorded gate evaluation."""

    ts_ms: StrictInt
    ts: str = Field(description="ISO 8601.")
    stage: StrictInt
    percent: float
    verdict: str
    srm_p: float
    arms: dict[str, ArmCounts]
    guardrails: dict[str, GuardrailPoint | None] = Field(
        description="Per metric its test; null while the metric had too little data."
    )
    latency: dict[str, ArmLatencyPoint] | None = Field(
        default=None,
        description="Per arm its latency quantiles as the gate saw them; null or absent"
        " where the gate gave none (points recorded before they were kept).",
    )
    limits: dict[str, LimitPoint] | None = Field(
        default=None, description="Per absolute limit its test, at a stage without control."
    )


class StageHistory(ServedView):
    stage: StrictInt
    percent: float
    points: list[HistoryPoint]


class RolloutHistory(ServedView):
    """``GET /rollouts/{flag}/history``: the current rollout's gate points, stage by stage."""

    flag: str
    rollout_id: str
    stages: list[StageHistory]

    @classmethod
    def read(cls, served: object) -> RolloutHistory | None:
        """A served history read as a client reads one: None unless it is a rollout's history;
        a stage or point breaking the contract is left out, never raised, and at most
        :data:`MAX_SERVED_STAGES` stages of :data:`MAX_SERVED_POINTS` points (the latest) are
        read."""
        stages = served.get("stages") if isinstance(served, Mapping) else None
        if not isinstance(served, Mapping) or not isinstance(stages, list):
            return None
        try:
            kept = [s for s in map(_stage, stages[:MAX_SERVED_STAGES]) if s is not None]
            ids = {"flag": served.get("flag"), "rollout_id": served.get("rollout_id")}
            return cls.model_validate({**ids, "stages": kept})
        except ValidationError:
            return None

    def points(self) -> list[HistoryPoint]:
        """Every point, stage by stage, as recorded."""
        return [point for stage in self.stages for point in stage.points]

    def names(self) -> dict[int, str]:
        """Each stage in words, as every output names it: ``stage 3/5 (25%)``."""
        total = len(self.stages)
        named = {s.stage: position_label(s.stage, total, s.percent) for s in self.stages}
        return {index: name for index, name in named.items() if name is not None}


def _stage(entry: object) -> StageHistory | None:
    if not isinstance(entry, Mapping):
        return None
    points = entry.get("points")
    kept = (
        [p for p in map(_point, points[-MAX_SERVED_POINTS:]) if p is not None]
        if isinstance(points, list)
        else []
    )
    try:
        fields = {"stage": entry.get("stage"), "percent": entry.get("percent")}
        return StageHistory.model_validate({**fields, "points": kept})
    except ValidationError:
        return None


def _point(point: object) -> HistoryPoint | None:
    try:
        return HistoryPoint.model_validate(point)
    except ValidationError:
        return None
