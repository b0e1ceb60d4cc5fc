"""A metric source's per-arm numbers as the arm aggregates the guardrails already test.

The gate's tests read :class:`ArmAggregate`; a guardrail read from Prometheus
is tested by the very same functions (:func:`~controller.core.stats.guardrails.guardrail_result`)
once its numbers are put in one:

* a **count and a total** (errors and requests, conversions and exposures over
  the stage, from ``increase``) become the arm's counters, rounded to whole
  events (``increase`` extrapolates to the window's edges, so it is rarely a
  whole number) with the count never above the total;
* **cumulative buckets** (upper edge in ms, count at or below it) become the
  fixed log-scale histogram (:mod:`controller.core.common.histogram`): each
  source bucket's requests are spread over the fixed buckets it covers in
  proportion to the overlap, *linearly*, as Prometheus' ``histogram_quantile``
  interpolates inside a bucket, so a quantile read here is close to the one a
  dashboard shows; the first bucket starts at 0, and the ``+Inf`` bucket's
  requests are put at the highest finite edge (where ``histogram_quantile``
  puts them too). Totals are kept exact by largest-remainder rounding.

What is lost against per-unit events: the units. Counters count requests, not
who made them, so these aggregates have no units and no sample-ratio test on
units can be run from them (docs/prometheus.md).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.core.common import BUCKET_COUNT, EDGES_MS, bucket_bounds
from controller.core.metrics_source import Taken
from controller.core.stats.aggregates import ArmAggregate
from controller.core.stats.sequential import SequentialResult
from controller.core.wire import JsonObject


def counted_arm(metric: str, count: float, total: float) -> ArmAggregate:
    """The arm as :func:`~controller.core.stats.guardrails.guardrail_result` reads ``metric``."""
    trials = max(round(total), 0)
    hits = min(max(round(count), 0), trials)
    if metric == "conversion_rate":
        return ArmAggregate(exposures=trials, conversions=hits)
    return ArmAggregate(requests=trials, errors=hits)


def histogram_arm(buckets: Sequence[tuple[float, float]]) -> ArmAggregate:
    """The arm's latency from cumulative ``(edge_ms, count)`` buckets ending at ``+inf``."""
    hist = spread(buckets)
    return ArmAggregate(requests=sum(hist), latency_count=sum(hist), latency_histogram=tuple(hist))


def spread(buckets: Sequence[tuple[float, float]]) -> list[int]:
    """The fixed histogram's counts for cumulative source buckets (see the module)."""
    mass = [0.0] * BUCKET_COUNT
    low, below = 0.0, 0.0
    finite = [edge for edge, _ in buckets if math.isfinite(edge)]
    top = max(finite, default=0.0)
    for edge, cumulative in buckets:
        count = max(cumulative - below, 0.0)
        below = max(below, cumulative)
        if count > 0:
            _add(mass, low, edge, count, top)
        low = edge if math.isfinite(edge) else low
    return _whole(mass, round(below))


def _add(mass: list[float], low: float, high: float, count: float, top: float) -> None:
    """Spread ``count`` requests evenly over [low, high] (at ``top`` when high is +inf)."""
    if math.isinf(high) or high <= low:
        mass[_bucket_at(top if math.isinf(high) else high)] += count
        return
    first, last = _bucket_at(low), _bucket_at(high)
    for index in range(first, last + 1):
        b_low, b_high = bucket_bounds(index)
        overlap = min(high, b_high) - max(low, b_low)
        if overlap > 0:
            mass[index] += count * overlap / (high - low)


def _bucket_at(value: float) -> int:
    """The fixed bucket holding ``value`` (an edge belongs to the bucket it closes)."""
    return bisect_left(EDGES_MS, value)


def _whole(mass: list[float], total: int) -> list[int]:
    """Counts summing to ``total``: each share's floor, then the largest remainders."""
    counts = [math.floor(m) for m in mass]
    short = total - sum(counts)
    order = sorted(range(len(mass)), key=lambda i: mass[i] - counts[i], reverse=True)
    for i in order[: max(short, 0)]:
        counts[i] += 1
    return counts


def limit_result(value: float, bound: float, *, at_most: bool) -> SequentialResult:
    """A scalar against a fixed bound (a Prometheus limit): breached iff beyond it.

    A scalar carries no sample size, so there is no interval to draw: the
    number is read as it is, which is why a limit's query should be a share
    over the stage (an ``increase`` ratio), not an instantaneous rate.
    """
    beyond = value > bound if at_most else value < bound
    return SequentialResult(
        delta=value,
        variance=0.0,
        n=0,
        half_width=0.0,
        lower=value,
        upper=value,
        regressed=beyond,
        direction="lower_is_better" if at_most else "higher_is_better",
        tolerance=bound,
        alpha=0.0,
        n_tune=0,
        p_value=0.0 if beyond else 1.0,
    )


MAX_SHOWN_QUERY = 2500
"""A query is kept in the evidence up to this many characters."""


@dataclass(slots=True)
class Shown:
    """What the evidence keeps of one reading (a guardrail's, a limit's, the traffic's):
    when it was taken, each query as asked, each arm's numbers, and what was made of it;
    or only why it is missing."""

    at: str | None = None
    queries: dict[str, dict[str, str]] = field(default_factory=dict)
    arms: dict[str, dict[str, int]] = field(default_factory=dict)
    missing: str | None = None
    problems: list[str] = field(default_factory=list)
    request_share: float | None = None
    value: float | None = None
    bound: dict[str, float] = field(default_factory=dict)
    test: JsonObject | None = None

    def wire(self) -> JsonObject:
        """The reading as the evidence carries it: only the parts it has, in this order."""
        if self.at is None:
            return {"missing": self.missing}
        shown: JsonObject = {
            "at": self.at,
            "queries": {role: {**by_arm} for role, by_arm in self.queries.items()},
            "arms": {arm: {**numbers} for arm, numbers in self.arms.items()},
        }
        if self.problems:
            shown["problems"] = [*self.problems]
        if self.request_share is not None:
            shown["request_share"] = self.request_share
        if self.value is not None:
            shown["value"] = self.value
        if self.bound:
            shown["bound"] = {**self.bound}
        if self.test is not None:
            shown["test"] = self.test
        return shown


def shown_reading(
    taken: Taken, arms: Mapping[str, ArmAggregate], problems: list[str] | None = None
) -> Shown:
    """What the evidence keeps of a reading: when, each query as asked, each arm's numbers."""
    queries: dict[str, dict[str, str]] = {}
    for (arm, role), text in taken.queries.items():
        queries.setdefault(role, {})[arm] = text[:MAX_SHOWN_QUERY]
    return Shown(
        at=taken.at.isoformat(),
        queries=queries,
        arms={arm: arm_numbers(aggregate) for arm, aggregate in arms.items()},
        problems=problems or [],
    )


def arm_numbers(arm: ArmAggregate) -> dict[str, int]:
    numbers = {
        "requests": arm.requests,
        "errors": arm.errors,
        "exposures": arm.exposures,
        "conversions": arm.conversions,
        "latency_count": arm.latency_count,
    }
    return {k: v for k, v in numbers.items() if v}
