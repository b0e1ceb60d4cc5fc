"""One unit counted under several flags: the cumulative comparison counts it once.

Every flag naming a holdout counts its own units, so a unit several flags saw is
counted once per flag: added up, 5,822 flag-units may be 2,840 people. The
cumulative comparison counts each unit once (the store's union of every flag's
cells, :class:`People`), shows that, and takes it as its N. Its variance needs
nothing more: a unit falls in the same bucket of units under every flag, so the
delta method over buckets holds all of a unit's events, under every flag, in one
cluster, and a request reported once per flag weighs what it should
(docs/architecture.md, "Holdouts compared"). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class People:
    """Distinct units over every flag naming the holdout, each counted once however many
    flags saw it: everyone else's and the holdout's (the store's union of every cell)."""

    rest: int
    holdout: int


@dataclass(frozen=True, slots=True)
class Overlap:
    """One group's units over the flags: counted once per flag, and each once."""

    counted: int
    distinct: int

    @property
    def ratio(self) -> float:
        """Units counted per distinct unit: how many flags saw a unit, on average (1 where
        no unit is under two flags)."""
        return max(1.0, self.counted / self.distinct) if self.distinct > 0 else 1.0


def overlap_of(per_flag: Sequence[int], union: int | None) -> Overlap:
    """A group's :class:`Overlap` from each flag's units and their union (None: none read,
    every flag's units taken for different units). The union is kept between the most one
    flag counted and all of them added: a HyperLogLog's error may step outside either."""
    counted = sum(per_flag)
    distinct = counted if union is None else min(counted, max(union, max(per_flag, default=0)))
    return Overlap(counted, distinct)
