"""One unit that decides a metric, named: the bucket of units carrying most of its variance.

Pure. A bot or a broken account that sends a large share of an arm's requests lands, with
all of them, in one bucket of units (:mod:`controller.core.stats.units`): that bucket's
residual (Y_b - R·N_b)² then makes up most of the arm's variance on units, and the metric's
interval is about as wide as that one unit's behaviour allows, whatever the rest of the arm
does. :func:`dominance` names the bucket where it carries at least :data:`DOMINANT_SHARE`
of the variance, with its share of the arm's events, so the evidence can say why a
guardrail is wide or not yet tested (docs/architecture.md, *Statistics*, "One unit that
decides a metric").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.core.rollouts import Guardrail
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.latency import exceedance_bucket, histogram_quantile
from controller.core.stats.on_units import QUANTILES, latency_position
from controller.core.stats.units import (
    CONVERSIONS,
    COUNTED_KINDS,
    ERRORS,
    EXPOSURES,
    FINE_PER_BIN,
    REQUESTS,
    VALUE_SUM,
    VALUES,
)

DOMINANT_SHARE = 0.5
"""A bucket of units carrying this share of an arm's variance on units is named: one unit
(or a very few) then decides the metric, whatever the rest do."""


@dataclass(frozen=True, slots=True)
class Dominance:
    """The bucket of units that carries most of a metric's variance on units in one arm."""

    arm: str
    bucket: int
    events_share: float
    """The bucket's share of the arm's events of the metric (its requests, exposures, ...)."""
    variance_share: float
    """Its share of the arm's spread Σ_b (Y_b - R·N_b)²: of the variance on units."""


def dominance(guardrail: Guardrail, data: FlagAggregates) -> Dominance | None:
    """The bucket of units that carries at least :data:`DOMINANT_SHARE` of the guardrail's
    variance on units in either arm (the larger where both do); None where none does, or
    the arms have no buckets. Buckets hash units independently of the arms, so a bucket
    this heavy is, in practice, one unit sending a large share of the arm's events."""
    found: Dominance | None = None
    for name, arm in (("treatment", data.treatment), ("control", data.control)):
        if arm.buckets is None:
            continue
        columns = _metric_columns(guardrail, arm)
        if columns is None:
            continue
        share = _heaviest(name, *columns)
        if share is not None and (found is None or share.variance_share > found.variance_share):
            found = share
    return found


def _metric_columns(
    guardrail: Guardrail, arm: ArmAggregate
) -> tuple[Sequence[float], Sequence[float]] | None:
    """The buckets' numerators and denominators of the guardrail's metric in ``arm``: for a
    latency, its share at or above the coarse edge at the arm's quantile (or the edge)."""
    buckets, metric = arm.buckets, guardrail.metric
    assert buckets is not None
    kinds = _RATIO_KINDS.get(metric) or (
        (COUNTED_KINDS[metric], EXPOSURES) if metric in COUNTED_KINDS else None
    )
    if kinds is not None:
        return buckets.column(kinds[0]), buckets.column(kinds[1])
    if metric == "latency_exceedance" and guardrail.edge_ms is not None:
        first = exceedance_bucket(guardrail.edge_ms) // FINE_PER_BIN
    elif metric in QUANTILES:
        at = histogram_quantile(arm.latency_histogram, QUANTILES[metric])
        if at is None:
            return None
        first = int(latency_position(at) // FINE_PER_BIN)
    else:
        return None
    return buckets.latency_from(first), buckets.latency_from(0)


_RATIO_KINDS = {
    "error_rate": (ERRORS, REQUESTS),
    "conversion_rate": (CONVERSIONS, EXPOSURES),
    "conversion_value": (VALUE_SUM, VALUES),
}


def _heaviest(arm: str, ys: Sequence[float], ns: Sequence[float]) -> Dominance | None:
    total = math.fsum(ns)
    if total <= 0:
        return None
    rate = math.fsum(ys) / total
    residuals = [(y - rate * n) ** 2 for y, n in zip(ys, ns, strict=True)]
    spread = math.fsum(residuals)
    if spread <= 0:
        return None
    bucket = max(range(len(residuals)), key=residuals.__getitem__)
    share = residuals[bucket] / spread
    if share < DOMINANT_SHARE:
        return None
    return Dominance(arm, bucket, ns[bucket] / total, share)


class NamedShares(Protocol):
    """A unit named with its shares of its arm's requests and errors."""

    @property
    def unit(self) -> str: ...
    @property
    def requests_share(self) -> float: ...
    @property
    def errors_share(self) -> float: ...


class DominantShares(Protocol):
    """What :func:`dominance_text` reads: a :class:`Dominance`, or the evidence's part that
    publishes one (:class:`~controller.core.wire.evidence.DominantUnit`)."""

    @property
    def arm(self) -> str: ...
    @property
    def events_share(self) -> float: ...
    @property
    def variance_share(self) -> float: ...


def dominance_text(found: DominantShares, unit: NamedShares | None = None) -> str:
    """``found`` as people read it: which arm, its share of the events, of the variance, and
    the unit in the bucket where one is named: by ``unit``, or on ``found`` itself (the
    ``unit``, ``requests_share`` and ``errors_share`` of the evidence's ``DominantUnit``)."""
    said = (
        f"one bucket of units in {found.arm} sent {found.events_share:.0%} of its events and"
        f" carries {found.variance_share:.0%} of its variance"
    )
    named = unit if unit is not None else found
    who = getattr(named, "unit", None)
    requests = getattr(named, "requests_share", None)
    errors = getattr(named, "errors_share", None)
    if who is None or requests is None or errors is None:
        return f"{said}: most likely one unit (a bot, a broken account) decides this metric"
    return (
        f"{said}: unit {who} sends {requests:.0%} of {found.arm}'s requests and {errors:.0%}"
        " of its errors, and decides this metric"
    )
