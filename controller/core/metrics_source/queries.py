"""What a plan writes to read a guardrail or a limit from Prometheus.

A guardrail with ``source: prometheus`` carries a :class:`PrometheusQueries`:

* ``count`` and ``total``: per arm, the events of the metric and the trials
  over the stage (errors and requests for ``error_rate``, conversions and
  exposures for ``conversion_rate``), each one number: the proportion test
  the event-fed gate runs;
* ``buckets``: per arm, a histogram's cumulative buckets over the stage, one
  series per ``le`` (in ``le_unit``): the quantile and exceedance tests of
  the latency guardrails.

Queries are PromQL templates (:mod:`~controller.core.metrics_source.templates`);
``arms`` says which label value each arm has, so apps that label by an
OpenTelemetry attribute (``feature_flag.variant``) or by their own convention
both work: the label *name* is the template's.

A :class:`PrometheusLimit` (``limits.prometheus``) is a scalar query gated
against a fixed bound at stages with no concurrent control, as the plan's
other absolute limits are.

The plan's error-budget burn rate (``burn_rate``) is :mod:`.burn`'s.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from controller.core.metrics_source.templates import (
    MAX_TEMPLATE_CHARS,
    SAFE_VALUE,
    TemplateError,
    parse_template,
)

ROLES = ("count", "total", "buckets")
"""The queries a guardrail may name, in the order they are read."""
COUNTED = frozenset({"error_rate", "conversion_rate"})
"""Metrics read from a count and a total per arm."""
HISTOGRAMS = frozenset({"latency_p95", "latency_p99", "latency_exceedance"})
"""Metrics read from histogram buckets per arm."""


def _template(text: str) -> str:
    try:
        parse_template(text)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return text


QueryText = Annotated[
    str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS), AfterValidator(_template)
]
"""A PromQL template whose placeholders are all known and where they may stand."""
LabelValue = Annotated[str, Field(pattern=f"^{SAFE_VALUE.pattern}$")]
"""An arm's label value: what ``{{arm}}`` becomes, so no quote or brace can be in it."""


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArmLabels(_Part):
    """The label value each arm's series carry (the label's name is the query's)."""

    treatment: LabelValue = "treatment"
    control: LabelValue = "control"

    @model_validator(mode="after")
    def _apart(self) -> Self:
        if self.treatment == self.control:
            raise ValueError("treatment and control need different label values")
        return self


class PrometheusQueries(_Part):
    """A guardrail's queries: count and total, or buckets, per arm over the stage."""

    count: QueryText | None = Field(
        default=None,
        description="Per arm over the stage: errors (error_rate) or conversions"
        " (conversion_rate), one number, e.g. sum(increase(…[{{window}}])).",
    )
    total: QueryText | None = Field(
        default=None, description="Per arm over the stage: requests or exposures, one number."
    )
    buckets: QueryText | None = Field(
        default=None,
        description="Per arm over the stage: a histogram's cumulative buckets, one series"
        " per le, e.g. sum by (le) (increase(…_bucket{…}[{{window}}])).",
    )
    le_unit: Literal["seconds", "milliseconds"] = Field(
        default="seconds", description="The unit of the buckets' le label."
    )
    arms: ArmLabels = Field(default_factory=ArmLabels, description="Each arm's label value.")

    def named(self) -> dict[str, str]:
        """The queries given, by role, in reading order."""
        return {role: q for role in ROLES if (q := getattr(self, role)) is not None}


def source_problem(metric: str, queries: PrometheusQueries | None, source: str) -> str | None:
    """Why a guardrail's source and its queries do not fit its metric, or None."""
    if source != "prometheus":
        return None if queries is None else "prometheus queries need source: prometheus"
    if queries is None:
        return "source: prometheus needs its queries (prometheus: {count, total} or {buckets})"
    given = set(queries.named())
    if metric in COUNTED and given != {"count", "total"}:
        return f"{metric} from Prometheus needs prometheus.count and prometheus.total, only"
    if metric in HISTOGRAMS and given != {"buckets"}:
        return f"{metric} from Prometheus needs prometheus.buckets, only"
    if metric not in COUNTED | HISTOGRAMS:
        return (
            f"{metric} cannot be read from Prometheus: it needs each unit's values, which"
            " counters and histograms do not keep"
        )
    return None


LimitName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class PrometheusLimit(_Part):
    """A scalar query gated against a fixed bound where no concurrent control exists."""

    name: LimitName = Field(description="What the evidence and the alerts call it.")
    query: QueryText = Field(
        description="One number for the treated units over the stage ({{arm}} is the"
        " treatment's label value)."
    )
    max: float | None = Field(default=None, allow_inf_nan=False, description="At most this.")
    min: float | None = Field(default=None, allow_inf_nan=False, description="At least this.")
    arm: LabelValue = Field(default="treatment", description="What {{arm}} becomes.")

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if (self.max is None) == (self.min is None):
            raise ValueError("a Prometheus limit needs exactly one of max and min")
        return self

    @property
    def bound(self) -> float:
        return self.max if self.max is not None else self.min  # type: ignore[return-value]
