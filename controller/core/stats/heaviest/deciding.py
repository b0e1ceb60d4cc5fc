"""One unit that decides a metric: named by its id, and the tests on requests not taken.

Pure. After caps (:mod:`.caps`), a unit listed among an arm's heaviest may still send most
of the arm's requests: where the arm is small, or the plan turned caps off or set a high
one. Its requests all land in one bucket of units, so the arm's variance on units is that
one unit's behaviour (one independent draw), and the comparison says what the unit does,
not what the flag does. Where one unit carries more than :data:`DECIDING_SHARE` of an
arm's requests the guardrails on requests (the error rate and the latency ones) are not
tested: the stage holds, naming the unit, and spends no alpha on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.heaviest.caps import Arm
from controller.core.stats.units import unit_bucket

DECIDING_SHARE = 0.5
"""A listed unit sending more than this share of an arm's requests (after caps) decides the
metrics on requests: the comparison is not taken. At half, the unit outweighs every other
unit of its arm together; the jackknife's variance (docs/architecture.md, "Unequal
buckets") already widens the test by 1/(1 - s) for a unit of share s, so below half the
test stays valid (the one-unit A/A of ``bench/aa.py`` stays under its level), and above
it, twice as wide or more, it could only hold anyway."""
REQUEST_METRICS = frozenset(
    {"error_rate", "latency_p95", "latency_p99", "latency_exceedance", "new_failures"}
)
"""The guardrails one unit's requests can decide: those whose events are requests, and the
failures by fingerprint, which a unit sending most of an arm's requests mostly sends too
(its own bug, counted in its one bucket: ``bench/new_failures.py``'s one-unit A/A rolled
identical arms back in 10 of 200 runs without this, each with that unit over half of
treatment)."""
CAPPED_METRICS = frozenset({"error_rate"})
"""Those whose counts are per unit, and capped: the others count every request's latency."""
HASHED_DIGITS = 12
"""Hex digits of a unit id's SHA-256 shown where a plan asks for hashed unit names."""


@dataclass(frozen=True, slots=True)
class UnitShare:
    """A listed unit's share of its arm's requests and of its errors."""

    arm: Arm
    unit: str
    requests_share: float
    errors_share: float


def shown(unit: str, *, hashed: bool) -> str:
    """The unit's id as evidence and reasons write it: itself, or the first
    :data:`HASHED_DIGITS` hex digits of its UTF-8 SHA-256."""
    if not hashed:
        return unit
    digest = hashlib.sha256(unit.encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:HASHED_DIGITS]


def deciding(data: FlagAggregates) -> UnitShare | None:
    """The listed unit with the largest share of its arm's requests, where that share is
    over :data:`DECIDING_SHARE`; None where no unit's is."""
    found: UnitShare | None = None
    for name, arm in _arms(data):
        if not arm.heaviest.units or arm.requests <= 0:
            continue
        share = _share(name, arm, 0)
        if share.requests_share > DECIDING_SHARE and (
            found is None or share.requests_share > found.requests_share
        ):
            found = share
    return found


def in_bucket(data: FlagAggregates, arm: Arm, bucket: int) -> UnitShare | None:
    """The heaviest listed unit of ``arm`` hashed to ``bucket``, with its shares; None where
    the arm lists none there."""
    counted = data.treatment if arm == "treatment" else data.control
    for index, unit in enumerate(counted.heaviest.units):
        if unit_bucket(unit.unit) == bucket:
            return _share(arm, counted, index)
    return None


def _share(name: Arm, arm: ArmAggregate, index: int) -> UnitShare:
    unit = arm.heaviest.units[index]
    requests = unit.requests / arm.requests if arm.requests > 0 else 0.0
    errors = unit.errors / arm.errors if arm.errors > 0 else 0.0
    return UnitShare(name, unit.unit, min(requests, 1.0), min(errors, 1.0))


def _arms(data: FlagAggregates) -> tuple[tuple[Arm, ArmAggregate], ...]:
    return (("treatment", data.treatment), ("control", data.control))


def share_text(found: UnitShare, *, hashed: bool = False) -> str:
    """``found`` as people read it: "unit bot-7 sends 41% of treatment's requests and 88% of
    its errors"."""
    return (
        f"unit {shown(found.unit, hashed=hashed)} sends {found.requests_share:.0%} of"
        f" {found.arm}'s requests and {found.errors_share:.0%} of its errors"
    )


def deciding_text(found: UnitShare, *, hashed: bool = False, capped: bool = True) -> str:
    """Why a guardrail on requests is not tested while ``found`` decides it (``capped``: its
    shares are of the capped counts)."""
    after = " after caps" if capped else ""
    return (
        f"{share_text(found, hashed=hashed)}{after}: one unit decides it, so it is not"
        f" tested while that share is over {DECIDING_SHARE:.0%}"
    )
