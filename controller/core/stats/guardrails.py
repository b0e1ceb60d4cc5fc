"""Each guardrail's sequential test on a stage's aggregates: the gate's step 1.

Every metric that is not one per unit is tested on the unit of assignment
(:mod:`controller.core.stats.on_units`): the test below, as if requests were
independent, is taken with its variance on units. Only arms that carry no units
(a Prometheus series) are tested on requests as independent.

Pure. A metric is tested once each arm has ``min_metric_events`` events of it
(a latency quantile also needs :func:`quantile_min_samples` per arm), at the
level :meth:`Plan.alpha_for`: error and conversion rates by
:func:`~controller.core.stats.sequential.proportion_test`, crashes and exceptions per
exposure by :func:`~controller.core.stats.sequential.count_rate_test`, the conversion value by
:func:`~controller.core.stats.sequential.mean_test`, latency quantiles and the share
above a latency edge from the arms' histograms
(:mod:`~controller.core.stats.latency`). A relative tolerance is taken against the
control arm's value. A guardrail naming a conversion (``conversion: checkout_completed``)
reads that name's conversions alone (:meth:`FlagAggregates.converted`); one naming none,
every conversion. :func:`controller.core.machine.gate.evaluate` decides on the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

from controller.core.rollouts import Guardrail, Plan
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.dominance import dominance, dominance_text
from controller.core.stats.failures.testing import NEW_FAILURES, new_failures_result
from controller.core.stats.heaviest.deciding import in_bucket, shown
from controller.core.stats.latency import (
    exceedance_bucket,
    exceedance_test,
    latency_quantile_test,
    quantile_min_samples,
)
from controller.core.stats.on_units import QUANTILES, metric_events, unit_result
from controller.core.stats.sequential import (
    Direction,
    SequentialResult,
    count_rate_test,
    mean_test,
    proportion_test,
)
from controller.core.stats.units import COUNTED_KINDS, MIN_CLUSTERS


def guardrail_result(
    guardrail: Guardrail, data: FlagAggregates, plan: Plan, *, alpha: float | None = None
) -> SequentialResult | None:
    """The guardrail's sequential test, or None while its metric has too little data.

    Too little is fewer than ``min_metric_events`` of the metric in either arm
    (the smaller arm is what limits what can be said), and for a quantile also
    fewer requests than bound it (:func:`metric_floor`). ``alpha``: the test's level,
    left out the plan's for the guardrail (:meth:`Plan.alpha_for`); a stage with a final
    look tests at its always-valid share (:meth:`Plan.sequential_alpha`).
    """
    read = data.converted(guardrail.conversion)
    t, c, metric = read.treatment, read.control, guardrail.metric
    if min(metric_events(metric, t), metric_events(metric, c)) < metric_floor(metric, plan):
        return None
    level = plan.alpha_for(guardrail.key) if alpha is None else alpha
    if metric == NEW_FAILURES:
        return new_failures_result(guardrail, data, plan, level) if on_units(data) else None
    independent = _independent_result(guardrail, t, c, plan, level)
    if not on_units(data):
        return independent
    result = unit_result(guardrail, (data.treatment, data.control), (t, c), independent)
    if result is None or math.isinf(result.half_width):
        return None  # not yet enough units to say how they vary
    return result


def units_waiting(guardrail: Guardrail, data: FlagAggregates, *, hashed: bool = False) -> str:
    """Why a guardrail with enough events is not yet tested on units (see :func:`on_units`),
    naming the listed unit in a bucket that decides it (by a hash of its id: ``hashed``)."""
    arms = (("treatment", data.treatment), ("control", data.control))
    held = {name: arm.buckets.occupied(guardrail.metric) for name, arm in arms if arm.buckets}
    if not held or max(held.values()) == 0:
        return "no events counted by unit yet (those counted before are not tested on units)"
    name = min(held, key=lambda arm: held[arm])
    if held[name] < MIN_CLUSTERS:
        return f"{held[name]} of {MIN_CLUSTERS} buckets of units hold data in {name}"
    found = dominance(guardrail, data)
    if found is None:
        return "too few units to bound it on units yet"
    unit = in_bucket(data, "treatment" if found.arm == "treatment" else "control", found.bucket)
    named = None if unit is None else replace(unit, unit=shown(unit.unit, hashed=hashed))
    return f"too few units to bound it on units yet: {dominance_text(found, named)}"


def on_units(data: FlagAggregates) -> bool:
    """Whether the arms were counted in buckets of units, as the store counts events (even
    when none was, yet: data from before buckets existed); a Prometheus series has none."""
    return data.treatment.buckets is not None and data.control.buckets is not None


def _independent_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan, alpha: float
) -> SequentialResult:
    """The guardrail's test at level ``alpha`` with every event taken as independent."""
    metric = guardrail.metric
    if metric in QUANTILES:
        return _quantile_result(guardrail, t, c, plan, alpha)
    if metric == "latency_exceedance":
        return _exceedance_result(guardrail, t, c, plan, alpha)
    if metric == "conversion_value":
        return _value_result(guardrail, t, c, plan, alpha)
    if metric in COUNTED_KINDS:
        return _count_result(guardrail, t, c, plan, alpha)
    return _proportion_result(guardrail, t, c, plan, alpha)


def metric_floor(metric: str, plan: Plan) -> int:
    """Events of ``metric`` each arm needs before it is tested.

    ``min_metric_events``, and for p95/p99 at least the requests whose
    order-statistic interval of the quantile lies inside the sample (73 for
    p95, 381 for p99): with fewer, an arm cannot bound its quantile.
    """
    if metric in QUANTILES:
        return max(plan.min_metric_events, quantile_min_samples(QUANTILES[metric]))
    return plan.min_metric_events


def _quantile_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan, alpha: float
) -> SequentialResult:
    return latency_quantile_test(
        t.latency_histogram,
        c.latency_histogram,
        QUANTILES[guardrail.metric],
        relative_tolerance=guardrail.tolerance if guardrail.relative else 0.0,
        alpha=alpha,
        n_tune=plan.n_tune,
    )


def _exceedance_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan, alpha: float
) -> SequentialResult:
    assert guardrail.edge_ms is not None  # the plan model guarantees it
    return exceedance_test(
        t.latency_histogram,
        c.latency_histogram,
        guardrail.edge_ms,
        tolerance=_absolute(guardrail, _exceedance_share(c, guardrail.edge_ms)),
        alpha=alpha,
        n_tune=plan.n_tune,
    )


def _value_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan, alpha: float
) -> SequentialResult:
    return mean_test(
        t.conversion_value_sum,
        t.conversion_value_sq,
        t.conversion_values,
        c.conversion_value_sum,
        c.conversion_value_sq,
        c.conversion_values,
        direction="higher_is_better",
        tolerance=_absolute(guardrail, _rate(c.conversion_value_sum, c.conversion_values)),
        alpha=alpha,
        n_tune=plan.n_tune,
    )


def _count_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan, alpha: float
) -> SequentialResult:
    count_t, count_c = counted(guardrail.metric, t), counted(guardrail.metric, c)
    return count_rate_test(
        count_t,
        t.exposures,
        count_c,
        c.exposures,
        tolerance=_absolute(guardrail, _rate(count_c, c.exposures)),
        alpha=alpha,
        n_tune=plan.n_tune,
    )


def counted(metric: str, arm: ArmAggregate) -> int:
    """A count guardrail's events in ``arm``: its crashes or its exceptions."""
    return arm.crashes if metric == "crash_count" else arm.exceptions


def _proportion_result(
    guardrail: Guardrail, t: ArmAggregate, c: ArmAggregate, plan: Plan, alpha: float
) -> SequentialResult:
    successes_t, n_t, successes_c, n_c = _proportion_counts(guardrail.metric, t, c)
    return proportion_test(
        successes_t,
        n_t,
        successes_c,
        n_c,
        direction="lower_is_better" if guardrail.lower_is_better else "higher_is_better",
        tolerance=_absolute(guardrail, _rate(successes_c, n_c)),
        alpha=alpha,
        n_tune=plan.n_tune,
    )


def _proportion_counts(metric: str, t: ArmAggregate, c: ArmAggregate) -> tuple[int, int, int, int]:
    if metric == "error_rate":
        return t.errors, t.requests, c.errors, c.requests
    # Conversion rate: conversions per exposure, capped at one per exposure.
    return (
        min(t.conversions, t.exposures),
        t.exposures,
        min(c.conversions, c.exposures),
        c.exposures,
    )


def _absolute(guardrail: Guardrail, control_value: float) -> float:
    return guardrail.tolerance * abs(control_value) if guardrail.relative else guardrail.tolerance


def _exceedance_share(arm: ArmAggregate, edge_ms: float) -> float:
    above = sum(arm.latency_histogram[exceedance_bucket(edge_ms) :])
    return _rate(above, arm.latency_count)


def _rate(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def control_baseline(guardrail: Guardrail, control: ArmAggregate) -> float | None:
    """The control's share a rate's relative lift is taken against; None for other metrics."""
    control = control.converted(guardrail.conversion)
    if guardrail.metric == "latency_exceedance" and guardrail.edge_ms is not None:
        return _exceedance_share(control, guardrail.edge_ms)
    if guardrail.metric in ("error_rate", "conversion_rate"):
        _, _, successes, n = _proportion_counts(guardrail.metric, control, control)
        return _rate(successes, n)
    return None


# --- the final look of a sequential hybrid ---------------------------------------------
#
# A guardrail's level is split in two (Plan.sequential_alpha, Plan.final_alpha): the
# always-valid boundary watches for harm at every look at its share, and the rest is spent
# once, when the stage would first move on (its minimum time and sample reached), in the
# classical one-sided z-test of the same difference with the same variance on units. By the
# union bound a healthy flag is rolled back by either with probability at most the two
# shares together, the guardrail's level. The look's time depends on the clock and on counts
# of units and events, never on the difference tested, so one look there keeps its level;
# the rollout records it (Rollout.final_look_at) and it is never taken twice in a stage
# (docs/architecture.md, *Statistics*, "The final look").

_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class FixedHorizonResult:
    """One guardrail's final look: the z-test of its difference against its tolerance."""

    delta: float
    variance: float
    bound: float
    """The one-sided bound on the harmful side at the look's level: the lower bound for a
    lower-is-better metric, the upper for a higher-is-better one."""
    z: float
    p_value: float
    alpha: float
    tolerance: float
    direction: Direction
    regressed: bool


def fixed_horizon_test(result: SequentialResult, alpha: float) -> FixedHorizonResult:
    """The one-sided z-test at level ``alpha`` of ``result``'s difference, with its variance
    (on units, where it was taken on units) and its tolerance: regressed iff the bound on
    the harmful side lies beyond the tolerance. A variance of 0 or an infinite one never
    regresses (as the sequential test)."""
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"need 0 < alpha < 0.5 (one-sided), got {alpha}")
    variance, delta = result.variance, result.delta
    sign = 1.0 if result.direction == "lower_is_better" else -1.0
    margin = sign * delta - result.tolerance
    if not 0.0 < variance < math.inf:
        bound = delta if variance == 0.0 else -sign * math.inf
        return FixedHorizonResult(
            delta, variance, bound, 0.0, 1.0, alpha, result.tolerance, result.direction, False
        )
    se = math.sqrt(variance)
    z = margin / se
    bound = delta - sign * _NORMAL.inv_cdf(1.0 - alpha) * se
    p_value = 1.0 - _NORMAL.cdf(z)
    return FixedHorizonResult(
        delta=delta,
        variance=variance,
        bound=bound,
        z=z,
        p_value=p_value,
        alpha=alpha,
        tolerance=result.tolerance,
        direction=result.direction,
        regressed=p_value < alpha,
    )
