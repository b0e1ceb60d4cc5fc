"""One unit counted under several flags: the cumulative comparison's units and its variance.

Every flag naming a holdout counts its own units, so a unit several flags saw is
counted once per flag. The cumulative comparison counts each unit once (the
store's union of every flag's cells, :class:`People`) and takes that as its N.
Its variance from the buckets of units needs nothing more: a unit falls in the
same bucket under every flag, so all its events are in one cluster of the delta
method however many flags count them (Deng, Knoblich and Lu, 2018). What does
move is the floor that variance is held to, the variance as if every event were
independent: taken over flag-units, it counts the events of a unit seen under k
flags as k units' events, where they are one unit's, often the same requests
reported once per flag. :func:`floored` raises that floor by
:attr:`Overlap.bound` (docs/architecture.md, "Holdouts compared"). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from controller.core.stats import SequentialResult
from controller.core.stats.sequential import difference_test


@dataclass(frozen=True, slots=True)
class People:
    """Distinct units over every flag naming the holdout, each counted once however many
    flags saw it: everyone else's and the holdout's (the store's union of every cell)."""

    rest: int
    holdout: int


@dataclass(frozen=True, slots=True)
class Overlap:
    """One group's units over the flags: S counted (once per flag), D distinct, K flags."""

    counted: int
    distinct: int
    flags: int

    @property
    def ratio(self) -> float:
        """Units counted per distinct unit, S / D: the mean of k, each unit counted under k
        flags (1 where no unit is counted twice)."""
        return max(1.0, self.counted / self.distinct) if self.distinct > 0 else 1.0

    @property
    def bound(self) -> float:
        """The most E[k²] / E[k] can be, for units counted under 1 to K flags each.

        A unit under k flags whose events are the same requests weighs k times their number
        with k² times their variance, so, the events otherwise independent, the variance is
        Σk²m / Σkm times the one taken over flag-units (m a unit's events): E[k²] / E[k]
        where m does not depend on k, at least S / D by Cauchy-Schwarz. Over 1 ≤ k ≤ K,
        k² - 1 = (k - 1)(k + 1) ≤ (k - 1)(K + 1), so Σk² ≤ D + (S - D)(K + 1) and the factor
        is at most (D + (S - D)(K + 1)) / S: exact with no overlap (1) and where every unit
        is under all K flags (K), between them never below S / D.
        """
        if self.distinct <= 0 or self.counted <= self.distinct:
            return 1.0
        extra = self.counted - self.distinct
        return (self.distinct + extra * (self.flags + 1)) / self.counted


def overlap_of(per_flag: Sequence[int], union: int | None) -> Overlap:
    """A group's :class:`Overlap` from each flag's units and their union (None: none read,
    every flag's units taken for different units). The union is kept between the most one
    flag counted and all of them added: a HyperLogLog's error may step outside either."""
    counted = sum(per_flag)
    distinct = counted if union is None else min(counted, max(union, max(per_flag, default=0)))
    return Overlap(counted, distinct, sum(1 for units in per_flag if units > 0))


def floored(result: SequentialResult, factor: float) -> SequentialResult:
    """``result`` with its variance at least ``factor`` times the variance as if every event
    were independent (its variance over its design effect); unchanged where it already is,
    or where it was not tested on units."""
    effect = result.design_effect
    if result.unit_of_analysis != "unit" or effect is None or not 0 < effect < factor:
        return result
    raised = difference_test(
        delta=result.delta,
        variance=result.variance * factor / effect,
        n=result.n,
        direction=result.direction,
        tolerance=result.tolerance,
        alpha=result.alpha,
        n_tune=result.n_tune,
    )
    widening = result.widening
    if widening is not None and result.half_width > 0:
        widening *= raised.half_width / result.half_width
    return replace(raised, unit_of_analysis="unit", design_effect=factor, widening=widening)
