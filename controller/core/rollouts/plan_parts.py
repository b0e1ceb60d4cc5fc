"""A plan's parts: stages, guardrails, the watch, the time box and the backend.

Each part validates its own fields, bounded like the rest of a plan
(:mod:`controller.core.rollouts.plan`, which checks how the parts fit together):
durations within [0, :data:`MAX_DURATION`], counts up to :data:`MAX_COUNT`,
tolerances up to :data:`MAX_TOLERANCE`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from controller.core.common import (
    MAX_CONVERSION_VALUE,
    MAX_LATENCY_MS,
    ConversionName,
    ReadableDuration,
)
from controller.core.metrics_source import PrometheusLimit, PrometheusQueries, source_problem
from controller.core.rollouts.approval_ledger import ApprovalGate
from controller.core.rules import AudienceRule, parse

Metric = Literal[
    "error_rate",
    "latency_p95",
    "latency_p99",
    "latency_exceedance",
    "conversion_rate",
    "conversion_value",
    "crash_count",
    "exception_count",
    "new_failures",
]
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "error_rate",
        "latency_p95",
        "latency_p99",
        "latency_exceedance",
        "crash_count",
        "exception_count",
        "new_failures",
    }
)
COUNT_METRICS: frozenset[str] = frozenset({"crash_count", "exception_count"})
"""Counts with no denominator of their own, tested per exposure (docs/architecture.md)."""
FAILURE_METRICS: frozenset[str] = COUNT_METRICS | {"new_failures"}
"""The metrics that read the failures in a flag's traces: crashes, exceptions, and each
failure by its fingerprint (``new_failures``)."""
CONVERSION_METRICS: frozenset[str] = frozenset({"conversion_rate", "conversion_value"})
"""The metrics a guardrail may read for one named conversion alone."""
KEY_SEPARATOR = ":"
"""Between a guardrail's metric and the conversion it names, in its key."""
MAX_DURATION = timedelta(days=365)
"""The longest duration a plan may name; a year-long stage is a typo."""
MAX_COUNT = 1_000_000_000
"""The largest count (units, events, samples) a plan may ask for."""
MAX_TOLERANCE = MAX_CONVERSION_VALUE
"""The largest guardrail tolerance: no metric moves further than a conversion value may."""

Duration = Annotated[timedelta, ReadableDuration, Field(ge=timedelta(0), le=MAX_DURATION)]
"""``PT10M``, ``10m``, ``1h30m`` or seconds; a duration past a year is refused."""
Count = Annotated[int, Field(le=MAX_COUNT)]


def _rule_from_text(value: object) -> object:
    """A rule written as text is parsed (its errors say line and column); JSON passes on."""
    return parse(value) if isinstance(value, str) else value


AudienceField = Annotated[
    AudienceRule, BeforeValidator(_rule_from_text, json_schema_input_type=str | AudienceRule)
]
"""An audience rule in the text form (a string) or the JSON form (an object)."""


class Frozen(BaseModel):
    """A plan's part: immutable, and no field it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Stage(Frozen):
    """One step of a rollout: serve ``percent`` for at least ``min_duration``."""

    percent: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
    min_duration: Duration = Field(
        default=timedelta(minutes=30), description="The gate is not run before this."
    )
    min_units_per_arm: Count = Field(
        default=150,
        ge=0,
        description="Hold until both arms have it (the default matches min_metric_events').",
    )
    max_duration: Duration | None = Field(
        default=None,
        description="Past this without a decision the stage is inconclusive: it never advances,"
        " and the plan's health policy holds (default) or rolls back.",
    )
    approval: bool | ApprovalGate = Field(
        default=False,
        description="Wait for an operator's `approve` (true), or for approvals from N distinct "
        "keys holding a role: `{needs: [{role, count}], expires_after}`.",
    )
    audience: AudienceField | None = Field(
        default=None,
        description="Who this stage speaks to (text or JSON form); percent is of them. Left out:"
        " everyone in the plan's audience.",
    )

    @model_validator(mode="after")
    def _durations_ordered(self) -> Self:
        if self.max_duration is not None and self.max_duration < self.min_duration:
            raise ValueError("max_duration must not be shorter than min_duration")
        return self


class Guardrail(Frozen):
    """A metric that must not regress beyond its tolerance, checked continuously."""

    metric: Metric
    tolerance: float = Field(
        default=0.0,
        ge=0,
        le=MAX_TOLERANCE,
        allow_inf_nan=False,
        description="δ, in the metric's unit or relative.",
    )
    relative: bool = Field(default=False, description="δ is a share of the control value.")
    action: Literal["rollback", "pause"] = "rollback"
    edge_ms: float | None = Field(
        default=None,
        gt=0,
        le=MAX_LATENCY_MS,
        allow_inf_nan=False,
        description="With latency_exceedance: the latency edge in ms.",
    )
    dry_run: bool = Field(
        default=False,
        description="Evaluated, recorded and alerted on, but never rolls back, pauses or holds.",
    )
    conversion: ConversionName | None = Field(
        default=None,
        description="With conversion_rate or conversion_value: read only the conversions the"
        " app tracked under this name (checkout_completed). Left out: every conversion.",
    )
    source: Literal["events", "prometheus"] = Field(
        default="events", description="Where the metric is read: our events, or Prometheus."
    )
    prometheus: PrometheusQueries | None = Field(
        default=None, description="With source: prometheus, the PromQL templates per arm."
    )

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    @property
    def key(self) -> str:
        """What names this guardrail in evidence, history and gauges: its metric, and the
        conversion it reads when it names one (``conversion_rate:checkout_completed``)."""
        return guardrail_key(self.metric, self.conversion)

    @model_validator(mode="after")
    def _edge_with_exceedance(self) -> Self:
        if (self.metric == "latency_exceedance") != (self.edge_ms is not None):
            raise ValueError("edge_ms is required with latency_exceedance, and only there")
        if self.conversion is not None and self.metric not in CONVERSION_METRICS:
            raise ValueError(
                f"conversion names a tracked conversion: only with conversion_rate or"
                f" conversion_value, not {self.metric}"
            )
        if self.conversion is not None and self.source != "events":
            raise ValueError("conversion names a tracked conversion: only with source: events")
        problem = source_problem(self.metric, self.prometheus, self.source)
        if problem:
            raise ValueError(problem)
        return self


def guardrail_key(metric: str, conversion: str | None = None) -> str:
    """``conversion_rate:checkout_completed``; the metric alone when no conversion is named."""
    return metric if conversion is None else f"{metric}{KEY_SEPARATOR}{conversion}"


def metric_of(key: str) -> str:
    """The metric of a guardrail's key (:attr:`Guardrail.key`): ``conversion_rate``."""
    return key.partition(KEY_SEPARATOR)[0]


def conversion_of(key: str) -> str | None:
    """The conversion a guardrail's key names, or None (a metric's names hold no ``:``)."""
    _, separator, name = key.partition(KEY_SEPARATOR)
    return name if separator else None


class Watch(Frozen):
    """A watch after the last stage: a holdback stays on control while the guardrails run.

    With ``holdback_percent`` 0 there is no control arm, so only absolute checks
    (sample ratio, traffic, uptime monitors) are watched, not the guardrails.
    """

    duration: Duration = Field(description="How long the watch lasts before completing.")
    holdback_percent: float = Field(
        default=1.0, ge=0, le=50, allow_inf_nan=False, description="Units kept on control."
    )
    on_regression: Literal["rollback", "alert"] = "rollback"


def _unit_cap(value: object) -> object:
    """``off``, ``default`` or a whole number of requests from 1; anything else is refused
    in words (a union's own error would list each of its branches)."""
    if value in ("off", "default"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_COUNT:
        return value
    raise ValueError(
        "a unit's requests counted per stage: a whole number from 1 to"
        f" {MAX_COUNT:,}, or `default` (100 times the mean unit's), or `off`; got {value!r}"
    )


UnitCap = Annotated[
    int | Literal["off", "default"],
    BeforeValidator(_unit_cap, json_schema_input_type=int | Literal["off", "default"]),
]


class HeavyUnits(Frozen):
    """How the gate weighs units that send many requests (docs/architecture.md, *Statistics*,
    "Caps")."""

    cap: UnitCap = Field(
        default="default",
        description="Requests per unit per stage the error rate counts, the same in both arms:"
        " a whole number, `default` (100 times the mean requests of the units not among the"
        " heaviest) or `off`.",
    )
    unit_names: Literal["ids", "hashed"] = Field(
        default="ids",
        description="How evidence and reasons name a unit: its id, or `hashed`, the first 12"
        " hex digits of its SHA-256.",
    )


def whole_percents(stages: list[Stage], watch: Watch | None) -> None:
    """Unleash's ``flexibleRollout`` serves whole percents from 1: refuse any other share."""
    for i, stage in enumerate(stages):
        if stage.percent < 1 or stage.percent != int(stage.percent):
            raise ValueError(
                f"stages.{i}.percent: Unleash serves whole percents from 1 to 100,"
                f" got {stage.percent:g}"
            )
    holdback = watch.holdback_percent if watch is not None else 0.0
    if holdback != int(holdback):
        raise ValueError(f"watch.holdback_percent: Unleash serves whole percents, got {holdback:g}")


class TimeBox(Frozen):
    """A flag on from ``starts_at`` (or its start) to ``ends_at``, then off by itself.

    At the first tick from ``ends_at`` the rollout is aborted, whatever its phase
    (running, paused, completed or still scheduled): control is served to everyone,
    and the decision names the time box. How far ahead the times may lie is checked
    when the start command is admitted (:mod:`controller.core.machine.scheduling`).
    """

    starts_at: AwareDatetime | None = Field(
        default=None,
        description="When the rollout starts: a scheduled start, as `start --at` gives.",
    )
    ends_at: AwareDatetime = Field(description="When the flag turns off by itself.")

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


FeatureName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.~-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.~-]+$")]


class UnleashTarget(Frozen):
    """The Unleash feature a rollout is served from; what it leaves out the settings give."""

    feature: FeatureName = Field(description="The feature (toggle) name in Unleash.")
    project: Name | None = Field(default=None, description="Default: the settings' project.")
    environment: Name | None = Field(default=None, description="Default: the settings' one.")
    stickiness: Name | None = Field(
        default=None, description="The context field units are hashed on (default: settings)."
    )


class Backend(Frozen):
    """Where the rollout's assignment is served besides the flag-state topic."""

    unleash: UnleashTarget | None = None


class Limits(BaseModel):
    """Absolute limits on the treated units of a stage that serves all of its audience."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate: float | None = Field(
        default=None, gt=0, lt=1, allow_inf_nan=False, description="Errors per request, at most."
    )
    latency_p95_ms: float | None = Field(
        default=None, gt=0, le=MAX_LATENCY_MS, allow_inf_nan=False, description="p95, at most."
    )
    latency_p99_ms: float | None = Field(
        default=None, gt=0, le=MAX_LATENCY_MS, allow_inf_nan=False, description="p99, at most."
    )
    prometheus: list[PrometheusLimit] = Field(
        default_factory=list,
        max_length=8,
        description="Scalar PromQL queries, each with its bound.",
    )
    require_proof: bool = Field(
        default=False,
        description="Hold a stage until each limit on the treated units' events is shown"
        " kept (its always-valid upper bound below the limit), not only not shown breached.",
    )

    def named(self) -> dict[str, float]:
        """The limits the plan set on the treated units' events, by name."""
        fields = self.model_dump(exclude={"prometheus", "require_proof"})
        return {name: value for name, value in fields.items() if value is not None}


AttributeName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")
]
"""An OpenTelemetry attribute name (``enduser.id``, ``app.user_id``)."""
VariantName = Annotated[str, Field(min_length=1, max_length=128)]
TelemetryArm = Literal["treatment", "control"]


def _both_arms() -> dict[str, TelemetryArm]:
    return {"treatment": "treatment", "control": "control"}


class TelemetryPlan(Frozen):
    """How the rollout is read from the OpenTelemetry an OpenFeature app already emits."""

    variants: Annotated[dict[VariantName, TelemetryArm], Field(min_length=1, max_length=64)] = (
        Field(
            default_factory=_both_arms,
            description="The variant an evaluation names (`feature_flag.result.variant`; when"
            " it names none, its `feature_flag.result.value` as text, such as `true`) and the"
            " arm it stands for; an evaluation of another variant is not counted.",
        )
    )
    unit_attribute: AttributeName | None = Field(
        default=None,
        description="The span or resource attribute naming the unit when an evaluation"
        " carries no `feature_flag.context.id`; without either, the request (its trace) is"
        " the unit.",
    )
    error_status_min: int = Field(
        default=500,
        ge=400,
        le=599,
        description="A request whose HTTP status is at least this is an error (as is a span"
        " with status ERROR).",
    )
    conversions: list[ConversionName] = Field(
        default_factory=list,
        max_length=32,
        description="Names of spans, span events or log records counted as that named"
        " conversion, in a trace in which the flag was evaluated.",
    )
    conversion_value: AttributeName = Field(
        default="value",
        description="The attribute holding a conversion's value (a number; else none).",
    )
