"""A holdout against everyone else: each flag naming it, and everything released, together.

A holdout's units are served control by every flag that names it, and their
events are counted in cells of their own (cohort ``holdout``). Everyone else
is every other unit those flags saw, whatever they were served: treatment or
control at a stage, carried or outside a ring. The holdout is hashed apart
from every flag's buckets, so the two groups differ only by the releases:
comparing them measures what the releases did, together, over their whole
course (an intent-to-treat comparison of "released as planned" against
"never released").

Each comparison is the gate's own (:func:`controller.core.stats.guardrail_result`):
everyone else in the treatment's place, the holdout in the control's, on the
plan's guardrails on events (a Prometheus series knows no holdout) with their
tolerances, on the unit of assignment (the
delta method over buckets of units), with the always-valid bound, so the
report may be read at any time. The report's alpha is split evenly over its
comparisons (one per flag, and the cumulative one), and each comparison's
share over its guardrails as the plan weighs them: by the union bound, a
report on releases that changed nothing names a regression with probability
at most alpha however often it is read.

The cumulative comparison adds each group's cells over every flag, bucket by
bucket. A unit falls in the same bucket of units under every flag, so its
events stay one cluster however many flags report them, and the delta method
stays valid when one request is reported under several flags. Its units are
counted once each however many flags saw them (:mod:`.overlap`), and are its N.
Its guardrails are every guardrail key some flag's plan names (the first such
plan's definition). Each flag's comparison has its own sample-ratio check (units
of the holdout against the holdout's percent); the cumulative one has none and
is marked untrusted when any flag's check fails. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.core.holdouts.overlap import People, overlap_of
from controller.core.rollouts import Guardrail, Plan
from controller.core.stats import (
    ArmAggregate,
    FlagAggregates,
    SrmResult,
    control_baseline,
    guardrail_result,
    srm_test,
)
from controller.core.wire import Holdout

DEFAULT_ALPHA = 0.05
"""The report's false-regression rate, over all its comparisons, when none is asked for."""
MIN_ALPHA = 1e-6
"""The smallest alpha a report takes: below it, each test's share would underflow."""
SRM_THRESHOLD = 0.001
"""The sample-ratio check's level: the gate's."""

Verdict = Literal["regressed", "no_regression_seen", "too_little_data"]


@dataclass(frozen=True, slots=True)
class FlagCells:
    """One flag naming the holdout: its plan and both groups' cells over its versions."""

    flag: str
    plan: Plan
    versions: tuple[int, ...]
    rest: ArmAggregate
    """Everyone else: every cell of the flag's versions but the holdout's, units a union."""
    holdout: ArmAggregate


class GuardrailComparison(BaseModel):
    """One guardrail, everyone else against the holdout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    guardrail: str = Field(description="The guardrail's key, as the plan names it.")
    verdict: Verdict
    rest: float | None = Field(
        default=None, description="Everyone else's rate (rate metrics); absent for others."
    )
    holdout: float | None = Field(
        default=None, description="The holdout's rate (rate metrics); absent for others."
    )
    delta: float | None = Field(
        default=None, description="Everyone else minus the holdout, in the metric's unit."
    )
    lower: float | None = Field(default=None, description="The always-valid bound's low end.")
    upper: float | None = Field(default=None, description="The always-valid bound's high end.")
    tolerance: float | None = Field(
        default=None, description="How far worse counts as a regression, in the metric's unit."
    )
    alpha: float | None = Field(default=None, description="This test's level.")
    unit_of_analysis: str | None = Field(default=None, description="unit or request.")


class Comparison(BaseModel):
    """Everyone else against the holdout under one flag, or over every flag together."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scope: str = Field(description="The flag, or `cumulative` for every flag together.")
    versions: list[int] = Field(default_factory=list, description="The flag versions read.")
    rest_units: int = Field(
        ge=0, description="Units of everyone else; cumulatively, each counted once over the flags."
    )
    holdout_units: int = Field(
        ge=0, description="Units of the holdout; cumulatively, each counted once over the flags."
    )
    rest_requests: int = Field(ge=0)
    holdout_requests: int = Field(ge=0)
    sample_ratio_mismatch: bool | None = Field(
        default=None,
        description="The holdout's share of units is not its percent (the gate's check); "
        "absent for the cumulative comparison, which has none.",
    )
    sample_ratio: str | None = Field(
        default=None,
        description="The sample-ratio check in words: the holdout's units against those its"
        " percent expects, or what is missing; absent for the cumulative comparison.",
    )
    overlap: float | None = Field(
        default=None,
        ge=1.0,
        description="Cumulative only: units counted over the flags (once per flag) per"
        " distinct unit, the larger group's; 1 where no unit is under two flags.",
    )
    trusted: bool = Field(
        description="False where a sample-ratio check failed: its numbers are not evidence."
    )
    guardrails: list[GuardrailComparison]

    @property
    def regressed(self) -> bool:
        return any(g.verdict == "regressed" for g in self.guardrails)


class HoldoutReport(BaseModel):
    """A holdout's report: each flag naming it, then everything they released, together."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    holdout: str
    environment: str | None = None
    since: datetime | None = Field(
        default=None, description="Only rollouts started at or after this; absent: every one."
    )
    percent: float = Field(description="The share of units it keeps out, in percent.")
    alpha: float = Field(description="The report's false-regression rate, over every test.")
    flags: list[Comparison]
    cumulative: Comparison | None = Field(
        default=None, description="Every flag's cells together; absent with no flag."
    )


def holdout_report(
    holdout: Holdout,
    flags: Sequence[FlagCells],
    *,
    alpha: float = DEFAULT_ALPHA,
    environment: str | None = None,
    since: datetime | None = None,
    people: People | None = None,
) -> HoldoutReport:
    """The holdout against everyone else, per flag (in flag order) and cumulatively.

    ``people``: each group's distinct units over every flag, for the cumulative comparison;
    None takes every flag's units for different people (their sum, no overlap).
    """
    if not MIN_ALPHA <= alpha < 0.5:
        raise ValueError(f"alpha must be in [{MIN_ALPHA:g}, 0.5): {alpha}")
    ordered = sorted(flags, key=lambda f: f.flag)
    share = alpha / (len(ordered) + 1)
    compared = [_flag_comparison(f, holdout, share) for f in ordered]
    cumulative = None
    if ordered:
        trusted = all(c.trusted for c in compared)
        cumulative = _cumulative(ordered, share, people, trusted=trusted)
    return HoldoutReport(
        holdout=holdout.name,
        environment=environment,
        since=since,
        percent=holdout.percent,
        alpha=alpha,
        flags=compared,
        cumulative=cumulative,
    )


def cohort_check(rest: ArmAggregate, held: ArmAggregate, holdout: Holdout) -> SrmResult:
    """The holdout's sample-ratio check on one flag's cells: its held-out units against
    everyone else's, at the holdout's split. Flagged with no held-out unit where some were
    expected (:attr:`SrmResult.missing` ``control``): the apps may not report the cohort."""
    rest_share = 1.0 - holdout.percent / 100.0
    return srm_test(rest.units, held.units, rest_share, p_threshold=SRM_THRESHOLD)


def _flag_comparison(cells: FlagCells, holdout: Holdout, alpha: float) -> Comparison:
    srm = cohort_check(cells.rest, cells.holdout, holdout)
    compared = _comparison(
        cells.flag,
        cells.versions,
        _at_level(cells.plan, alpha),
        cells.rest,
        cells.holdout,
        srm=srm.flagged,
        trusted=not srm.flagged,
    )
    return compared.model_copy(update={"sample_ratio": ratio_text(srm)})


def ratio_text(srm: SrmResult) -> str:
    """The holdout's sample-ratio check (:func:`cohort_check`) in words, the holdout in the
    control's place: what the holdout's report, ``rolloutctl status`` and the console say."""
    if srm.missing == "control":
        return (
            f"no held-out units against {srm.expected_control:,.0f} expected (do the apps"
            " report cohort holdout with their events?)"
        )
    if srm.missing == "treatment":
        return f"no units of everyone else against {srm.expected_treatment:,.0f} expected"
    held = srm.observed_control
    return (
        f"{held:,} held-out unit{'' if held == 1 else 's'} against"
        f" {srm.expected_control:,.0f} expected (sequential p = {srm.sequential_p_value:.2g})"
    )


def _cumulative(
    flags: Sequence[FlagCells], alpha: float, people: People | None, *, trusted: bool
) -> Comparison:
    guardrails: dict[str, Guardrail] = {}
    for cells in flags:
        for guardrail in cells.plan.guardrails:
            if not guardrail.dry_run and guardrail.source == "events":
                guardrails.setdefault(guardrail.key, guardrail)
    first = flags[0].plan
    plan = first.model_copy(update={"guardrails": list(guardrails.values()), "alpha_weights": None})
    rest, held = _added([f.rest for f in flags]), _added([f.holdout for f in flags])
    groups = (
        overlap_of([f.rest.units for f in flags], None if people is None else people.rest),
        overlap_of([f.holdout.units for f in flags], None if people is None else people.holdout),
    )
    rest, held = replace(rest, units=groups[0].distinct), replace(held, units=groups[1].distinct)
    level = _at_level(plan, alpha)
    compared = _comparison("cumulative", (), level, rest, held, srm=None, trusted=trusted)
    return compared.model_copy(update={"overlap": max(g.ratio for g in groups)})


def _comparison(
    scope: str,
    versions: Sequence[int],
    plan: Plan,
    rest: ArmAggregate,
    holdout: ArmAggregate,
    *,
    srm: bool | None,
    trusted: bool,
) -> Comparison:
    data = FlagAggregates(flag=scope, versions=frozenset(versions), treatment=rest, control=holdout)
    return Comparison(
        scope=scope,
        versions=sorted(versions),
        rest_units=rest.units,
        holdout_units=holdout.units,
        rest_requests=rest.requests,
        holdout_requests=holdout.requests,
        sample_ratio_mismatch=srm,
        trusted=trusted,
        guardrails=[_guardrail(g, data, plan) for g in plan.guardrails if not g.dry_run],
    )


def _guardrail(guardrail: Guardrail, data: FlagAggregates, plan: Plan) -> GuardrailComparison:
    rest = control_baseline(guardrail, data.treatment)
    held = control_baseline(guardrail, data.control)
    result = guardrail_result(guardrail, data, plan)
    if result is None:
        return GuardrailComparison(
            guardrail=guardrail.key, verdict="too_little_data", rest=rest, holdout=held
        )
    return GuardrailComparison(
        guardrail=guardrail.key,
        verdict="regressed" if result.regressed else "no_regression_seen",
        rest=rest,
        holdout=held,
        delta=result.delta,
        lower=_finite(result.lower),
        upper=_finite(result.upper),
        tolerance=result.tolerance,
        alpha=result.alpha,
        unit_of_analysis=result.unit_of_analysis,
    )


def _finite(value: float) -> float | None:
    return value if abs(value) != float("inf") else None


def _at_level(plan: Plan, alpha: float) -> Plan:
    """``plan`` with its events guardrails alone (a Prometheus series has no holdout; its
    absolute limits compare no arms), their levels summing to ``alpha`` in one comparison:
    the plan's own alpha is split over its stages too, so it is scaled up by their number."""
    kept = [g for g in plan.guardrails if g.source == "events"]
    unlimited = plan.model_copy(update={"limits": None, "guardrails": kept})
    stages = int(str(unlimited.alpha_budget()["stages"]))
    return unlimited.model_copy(update={"alpha": alpha * max(1, stages)})


def _added(arms: Sequence[ArmAggregate]) -> ArmAggregate:
    """The arms' counts added; their unit buckets bucket by bucket (none: none held any)."""
    total = arms[0]
    for arm in arms[1:]:
        total = total.plus(arm)
    return total
