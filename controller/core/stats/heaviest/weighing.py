"""What the gate does with an arm's heaviest units, in one call: caps, then a unit that decides.

Pure. :func:`weighed` reads the plan's ``heavy_units`` (left out: the default cap, ids
shown), caps each listed unit's requests (:mod:`.caps`), and where one unit still sends
more than :data:`~.deciding.DECIDING_SHARE` of an arm's requests, holds the guardrails on
requests with a reason naming it (:mod:`.deciding`): the error rate where it does so after
caps, a latency where it does so at all (a unit's latencies are not capped). Where one
bucket of units holds more than that share of an arm's exposures (of its valued
conversions, for the conversion value), the guardrails per exposure are held likewise
(:mod:`.per_exposure`). The gate tests the capped counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.rollouts import HeavyUnits, Plan
from controller.core.stats.aggregates import FlagAggregates
from controller.core.stats.heaviest.caps import Capping, capped, default_cap
from controller.core.stats.heaviest.deciding import (
    CAPPED_METRICS,
    REQUEST_METRICS,
    UnitShare,
    deciding,
    deciding_text,
)
from controller.core.stats.heaviest.per_exposure import PER_EXPOSURE, bucket_text, heaviest_bucket


@dataclass(frozen=True, slots=True)
class Weighed:
    """The stage's counts as its tests read them, and why."""

    data: FlagAggregates
    """Both arms with each listed unit's requests capped."""
    capping: Capping = field(default_factory=Capping)
    deciding: UnitShare | None = None
    """The unit over the deciding share after caps, where one is."""
    held: dict[str, str] = field(default_factory=dict)
    """Each guardrail not tested while one unit decides it (on requests, or per exposure),
    with the reason."""
    hashed: bool = False
    """The plan asks for units named by a hash of their id."""


def plan_cap(plan: Plan, data: FlagAggregates) -> int | None:
    """The cap the plan asks for on ``data``: its own count, the default rule's, or none."""
    cap = (plan.heavy_units or HeavyUnits()).cap
    if cap == "off":
        return None
    return default_cap(data) if cap == "default" else cap


def weighed(plan: Plan, data: FlagAggregates) -> Weighed:
    """``data`` capped as the plan says, and the guardrails one unit decides (see the
    module). Arms listing no unit (a store before per-unit counts, a metric source) are
    taken as they are, but for the guardrails per exposure, held on their buckets alone."""
    hashed = (plan.heavy_units or HeavyUnits()).unit_names == "hashed"
    held = _per_exposure(plan, data, hashed=hashed)
    if not (data.treatment.heaviest.units or data.control.heaviest.units):
        return Weighed(data, held=held, hashed=hashed)
    counted, capping = capped(data, plan_cap(plan, data))
    # The error rate counts the capped requests; a latency, every request's latency.
    on_capped, on_all = deciding(counted), deciding(data)
    for g in plan.guardrails:
        if g.source != "events" or g.metric not in REQUEST_METRICS:
            continue
        capped_too = g.metric in CAPPED_METRICS
        found = on_capped if capped_too else on_all
        if found is not None:
            why = deciding_text(found, hashed=hashed, capped=capped_too)
            held[g.key] = f"{g.key} not yet tested: {why}"
    return Weighed(counted, capping, on_capped or on_all, held, hashed)


def _per_exposure(plan: Plan, data: FlagAggregates, *, hashed: bool) -> dict[str, str]:
    """Each guardrail per exposure (or per valued conversion) whose arm has a bucket of units
    over the deciding share of its denominator, with the reason (:mod:`.per_exposure`)."""
    held: dict[str, str] = {}
    for g in plan.guardrails:
        if g.source != "events" or g.metric not in PER_EXPOSURE:
            continue
        found = heaviest_bucket(g.metric, data)
        if found is not None:
            held[g.key] = f"{g.key} not yet tested: {bucket_text(found, hashed=hashed)}"
    return held
