"""Each guardrail's test on the unit of assignment: the design effect from buckets of units.

Pure. :func:`unit_result` takes a guardrail's test as if requests were independent
(:mod:`controller.core.stats.guardrails`) and gives the same test with its variance
on units: V * max(1, design effect), and N the units behind the metric. The design
effect is estimated from the arms' unit buckets (:mod:`controller.core.stats.units`):

* a ratio (errors per request, conversions per exposure, value per conversion, crashes or
  exceptions per exposure): the
  delta method's variance over buckets (the larger of the arms' own and the one identical
  arms would share, pooled within arms over both arms' buckets) against the variance as if
  the same events were independent;
* the share above a latency edge, and each arm's latency quantile: the design effect of the
  share of latencies above the edge pooled within both arms, each arm's residuals around its
  own share, interpolated between the coarse edges around the edge or each arm's quantile,
  whose ranks it widens. A difference between the arms is the effect being tested, never
  clustering, so no design effect is taken around both arms' pooled share.

Taking the variance as "independent variance times design effect" rather than the bucket
variance alone keeps today's floors (half an event, the pooled null) and lets a
rollout whose stage began before buckets existed be gated on all its data: the design
effect comes from the bucketed part, the variance from everything (docs/architecture.md,
*Statistics*). An arm with too few buckets holding data gives no design effect yet:
the metric is then not yet tested.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from controller.core.common import EDGES_MS, bucket_bounds
from controller.core.rollouts import Guardrail
from controller.core.stats.aggregates import ArmAggregate
from controller.core.stats.latency import (
    exceedance_bucket,
    histogram_quantile,
    latency_quantile_test,
)
from controller.core.stats.sequential import (
    SequentialResult,
    bernoulli_variance,
    difference_test,
    mean_and_variance,
    poisson_variance,
)
from controller.core.stats.units import (
    CONVERSIONS,
    COUNTED_KINDS,
    ERRORS,
    EXPOSURES,
    FINE_PER_BIN,
    LATENCY_BINS,
    MIN_CLUSTERS,
    REQUESTS,
    VALUE_SUM,
    VALUES,
    BucketCounts,
    ShareSpread,
    UnitBuckets,
    bucket_counts,
    bucket_ratio,
    occupied,
    pooled_variance,
    share_spread,
    within_arms_design_effect,
)

QUANTILES = {"latency_p95": 0.95, "latency_p99": 0.99}


def unit_result(
    guardrail: Guardrail,
    raw: tuple[ArmAggregate, ArmAggregate],
    read: tuple[ArmAggregate, ArmAggregate],
    independent: SequentialResult,
) -> SequentialResult | None:
    """``independent`` taken on units; None while the buckets cannot say how units vary.

    ``raw``: treatment and control as counted (every conversion, with their buckets);
    ``read``: as the guardrail reads them (a named conversion's counts alone). The test on
    units is at the level and tuning of ``independent`` (the plan's for the guardrail).
    """
    t, c = raw
    if t.buckets is None or c.buckets is None:
        return None
    metric = guardrail.metric
    units = _units(metric, read)
    if metric in QUANTILES:
        return _quantile(guardrail, (t.buckets, c.buckets), read, independent, units)
    deff = _design_effect(guardrail, raw, (t.buckets, c.buckets))
    if deff is None:
        return None
    result = difference_test(
        delta=independent.delta,
        variance=independent.variance * deff,
        n=units,
        direction=independent.direction,
        tolerance=independent.tolerance,
        alpha=independent.alpha,
        n_tune=independent.n_tune,
    )
    return on_units_result(result, independent)


def on_units_result(result: SequentialResult, independent: SequentialResult) -> SequentialResult:
    """``result`` marked as a test on units, with its inflation against ``independent``."""
    widening = None
    if math.isfinite(result.half_width) and independent.half_width > 0:
        widening = result.half_width / independent.half_width
    deff = None
    if math.isfinite(result.variance) and 0 < independent.variance < math.inf:
        deff = result.variance / independent.variance
    return SequentialResult(  # dataclasses.replace, spelt out: it runs for each test of a gate
        delta=result.delta,
        variance=result.variance,
        n=result.n,
        half_width=result.half_width,
        lower=result.lower,
        upper=result.upper,
        regressed=result.regressed,
        direction=result.direction,
        tolerance=result.tolerance,
        alpha=result.alpha,
        n_tune=result.n_tune,
        p_value=result.p_value,
        unit_of_analysis="unit",
        design_effect=deff,
        widening=widening,
    )


def _units(metric: str, read: tuple[ArmAggregate, ArmAggregate]) -> int:
    """N on units: each arm's units, at most its events of the metric (a unit without one
    adds nothing to the metric, and a unit-count estimate may exceed a handful of events)."""
    return sum(min(arm.units, metric_events(metric, arm)) for arm in read)


def metric_events(metric: str, arm: ArmAggregate) -> int:
    """How many events of ``metric`` the arm holds (the guardrails' floors count them too)."""
    if metric == "error_rate":
        return arm.requests
    if metric in {"conversion_rate", "new_failures"} or metric in COUNTED_KINDS:
        return arm.exposures
    if metric == "conversion_value":
        return arm.conversion_values
    return arm.latency_count


def _design_effect(
    guardrail: Guardrail,
    raw: tuple[ArmAggregate, ArmAggregate],
    buckets: tuple[UnitBuckets, UnitBuckets],
) -> float | None:
    metric = guardrail.metric
    if metric == "latency_exceedance":
        assert guardrail.edge_ms is not None  # the plan model guarantees it
        return _exceedance_effect(buckets, exceedance_bucket(guardrail.edge_ms), raw)
    t, c = raw
    if metric == "error_rate":
        spread = (
            bernoulli_variance(t.errors, t.requests),
            bernoulli_variance(c.errors, c.requests),
            bernoulli_variance(t.errors + c.errors, t.requests + c.requests),
        )
        return _ratio_effect(buckets, (ERRORS, REQUESTS), spread, (t.units, c.units))
    if metric == "conversion_rate":
        hits = min(t.conversions, t.exposures), min(c.conversions, c.exposures)
        spread = (
            bernoulli_variance(hits[0], t.exposures),
            bernoulli_variance(hits[1], c.exposures),
            bernoulli_variance(sum(hits), t.exposures + c.exposures),
        )
        return _ratio_effect(buckets, (CONVERSIONS, EXPOSURES), spread, (t.units, c.units))
    if metric in COUNTED_KINDS:
        return _count_effect(metric, raw, buckets)
    return _ratio_effect(buckets, (VALUE_SUM, VALUES), _value_spread(t, c), (t.units, c.units))


def _count_effect(
    metric: str, raw: tuple[ArmAggregate, ArmAggregate], buckets: tuple[UnitBuckets, UnitBuckets]
) -> float | None:
    """A count per exposure (crashes, exceptions) is a ratio of sums like any other: its
    design effect against the Poisson variance it would have were every event independent."""
    kind = COUNTED_KINDS[metric]
    t, c = raw
    counts = buckets[0].total(kind), buckets[1].total(kind)
    spread = (
        poisson_variance(counts[0], t.exposures),
        poisson_variance(counts[1], c.exposures),
        poisson_variance(sum(counts), t.exposures + c.exposures),
    )
    return _ratio_effect(buckets, (kind, EXPOSURES), spread, (t.units, c.units))


def _value_spread(t: ArmAggregate, c: ArmAggregate) -> tuple[float, float, float]:
    """Each arm's variance per valued conversion, and the pooled (within-arm) one."""
    _, var_t = mean_and_variance(t.conversion_value_sum, t.conversion_value_sq, t.conversion_values)
    _, var_c = mean_and_variance(c.conversion_value_sum, c.conversion_value_sq, c.conversion_values)
    n_t, n_c = t.conversion_values, c.conversion_values
    pooled = math.inf
    if n_t >= 2 and n_c >= 2:
        pooled = ((n_t - 1) * var_t + (n_c - 1) * var_c) / (n_t + n_c - 2)
    return var_t, var_c, pooled


def _ratio_effect(
    buckets: tuple[UnitBuckets, UnitBuckets],
    kinds: tuple[int, int],
    spread: tuple[float, float, float],
    units: tuple[int, int],
) -> float | None:
    """max(1, design effect) of the ratio of ``kinds`` (numerator, denominator) over the
    bucketed events (:func:`columns_effect`)."""
    columns = tuple((b.column(kinds[0]), b.column(kinds[1])) for b in buckets)
    return columns_effect((columns[0], columns[1]), spread, units)


Columns = tuple[Sequence[float], Sequence[float]]
"""One arm's numerators and denominators, bucket by bucket."""


def columns_effect(
    columns: tuple[Columns, Columns],
    spread: tuple[float, float, float],
    units: tuple[int, int],
) -> float | None:
    """max(1, design effect) of a ratio over buckets of units (``columns``: treatment's and
    control's numerators and denominators): the larger of the arms' and identical arms'
    variance on units, over the variance as if those events were independent (its own null
    floor included). ``spread``: the per-event variance of treatment, control and both
    pooled. None while an arm has too few buckets with data."""
    # Each arm's sums and spread, taken once for its own variance and the pooled one.
    ratio_t, ratio_c = (
        bucket_ratio(numerators, denominators) for numerators, denominators in columns
    )
    own = ratio_t.variance + ratio_c.variance
    if not math.isfinite(own) or not all(math.isfinite(s) for s in spread):
        return None
    null = pooled_variance([(ratio_t, units[0]), (ratio_c, units[1])])
    on_units = max(own, null) if math.isfinite(null) else own
    sum_t, sum_c = ratio_t.total, ratio_c.total
    independent = max(
        spread[0] / sum_t + spread[1] / sum_c, spread[2] * (1.0 / sum_t + 1.0 / sum_c)
    )
    if independent <= 0:
        return 1.0
    return max(1.0, on_units / independent)


@dataclass(slots=True)
class _Edges:
    """Each arm's design effect of the share of its latencies at coarse edges, each worked out
    once; and each arm's latencies counted per bucket they divide by."""

    buckets: tuple[UnitBuckets, UnitBuckets]
    effects: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)
    counted: tuple[BucketCounts, BucketCounts] | None = None

    def at(self, edge: int) -> tuple[float | None, float | None]:
        if edge not in self.effects:
            self.effects[edge] = self._share_effects(edge)
        return self.effects[edge]

    def _share_effects(self, first_bin: int) -> tuple[float | None, float | None]:
        """Per arm, the design effect of its share of latencies from coarse bin ``first_bin``
        up, pooled within both arms: each arm's residuals around its own share, over both
        arms' buckets (an arm's own alone, where the pooled one cannot be said). Never around
        the pooled share of both arms: a difference between the arms is the effect, not
        clustering. Not the larger of an arm's own and the pooled one either: a small arm's
        own, from the few tail events of its buckets, is mostly noise, and the larger of two
        noisy estimates of 1 is well above 1 (p99 lost a tenth of its power to it)."""
        if not 0 < first_bin < LATENCY_BINS:
            return None, None
        treatment, control = self.buckets
        if self.counted is None:
            self.counted = (
                bucket_counts(treatment.latency_from(0)),
                bucket_counts(control.latency_from(0)),
            )
        spread_t = share_spread(treatment.latency_from(first_bin), self.counted[0])
        spread_c = share_spread(control.latency_from(first_bin), self.counted[1])
        if spread_t is None or spread_c is None:
            return None, None
        pooled = within_arms_design_effect((spread_t, spread_c))
        return _arm_effect(spread_t, pooled), _arm_effect(spread_c, pooled)


def _arm_effect(spread: ShareSpread, pooled: float | None) -> float | None:
    return spread.design_effect if pooled is None else pooled


def _enough(buckets: Sequence[UnitBuckets]) -> bool:
    return all(occupied(b.latency_from(0)) >= MIN_CLUSTERS for b in buckets)


def _around(fine: float) -> tuple[int, float]:
    """The coarse bin holding fine histogram position ``fine`` and how far into it it lies."""
    low = int(fine // FINE_PER_BIN)
    return low, (fine - low * FINE_PER_BIN) / FINE_PER_BIN


def _latency_effect(edges: _Edges, fine: float, arm: int) -> float:
    """max(1, arm ``arm``'s design effect at fine histogram position ``fine``): interpolated
    between the coarse edges around it (the one defined where the other is not)."""
    low, into = _around(fine)
    below, above = edges.at(low)[arm], edges.at(low + 1)[arm]
    if below is None or above is None:
        found = below if above is None else above
        return max(1.0, found or 1.0)
    return max(1.0, below + (above - below) * into)


def _exceedance_effect(
    buckets: tuple[UnitBuckets, UnitBuckets],
    first: int,
    read: tuple[ArmAggregate, ArmAggregate],
) -> float | None:
    """The design effect of the difference of the shares above an edge: each arm's own
    effect weighing its share of the variance as if latencies were independent."""
    if not _enough(buckets):
        return None
    edges = _Edges(buckets)
    weights = [_share_variance(arm.latency_histogram, first) for arm in read]
    effects = [_latency_effect(edges, float(first), arm) for arm in (0, 1)]
    total = math.fsum(weights)
    if total <= 0:
        return max(effects)
    return math.fsum(w * e for w, e in zip(weights, effects, strict=True)) / total


def _share_variance(histogram: Sequence[int], first: int) -> float:
    """The variance of an arm's share of latencies from histogram bucket ``first`` up, as if
    they were independent (floored at half an event, as the test floors it)."""
    counted = sum(histogram)
    return bernoulli_variance(sum(histogram[first:]), counted) / counted if counted else 0.0


def latency_position(latency_ms: float) -> float:
    """Where ``latency_ms`` lies in the fine histogram, as a bucket index with its fraction."""
    index = bisect_right(EDGES_MS, latency_ms)
    low, high = bucket_bounds(index)
    if index == 0 or not math.isfinite(high):
        return float(index)
    return index + math.log(latency_ms / low) / math.log(high / low)


def _quantile(
    guardrail: Guardrail,
    buckets: tuple[UnitBuckets, UnitBuckets],
    read: tuple[ArmAggregate, ArmAggregate],
    independent: SequentialResult,
    units: int,
) -> SequentialResult | None:
    if not _enough(buckets):
        return None
    q = QUANTILES[guardrail.metric]
    effects: list[float] = []
    edges = _Edges(buckets)  # both arms' quantiles often lie between the same edges
    for index, arm in enumerate(read):
        at = histogram_quantile(arm.latency_histogram, q)
        if at is None:
            return None
        effects.append(_latency_effect(edges, latency_position(at), index))
    result = latency_quantile_test(
        read[0].latency_histogram,
        read[1].latency_histogram,
        q,
        relative_tolerance=guardrail.tolerance if guardrail.relative else 0.0,
        alpha=independent.alpha,
        n_tune=independent.n_tune,
        design_effects=(effects[0], effects[1]),
        n=units,
    )
    return on_units_result(result, independent)
