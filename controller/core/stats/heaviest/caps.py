"""Caps: each unit's requests counted in the error rate bounded by one count for both arms.

Pure. A unit that sends a large share of an arm's requests (a retrying client, a crawler, a
synthetic monitor with a fixed id) decides the arm's error rate with all of them, and its
requests all fall in one bucket of units. Experimentation platforms bound such a unit's
weight by capping (winsorising) what each unit counts before the comparison (Kohavi, Deng,
Longbotham and Xu, *Seven Rules of Thumb for Web Site Experimenters*, KDD 2014). The cap is
one absolute count of requests per unit per stage, the same in both arms, and chosen without
looking at any outcome: a cap per share of an arm would give a 1% arm and a 99% arm
different estimands, and bias the test between them.

A capped unit keeps its own error rate: of n requests and e errors, c requests and e·c/n
errors are counted (rounded to whole errors), and the same amounts come off the bucket of
units it is hashed to (:func:`~controller.core.stats.units.unit_bucket`), so the arm's
totals and its buckets' stay equal. Only units listed among an arm's heaviest
(:class:`~controller.core.stats.heaviest.counts.Heaviest`) can be capped: the cap is raised
to the smallest count a full list holds, and to the most a unit the store did not keep may
have sent, so that every unit over the cap is listed, and capped, in both arms alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.heaviest.counts import HEAVIEST_KEPT, Heaviest, UnitCount
from controller.core.stats.units import ERRORS, KIND_COUNT, REQUESTS, UnitBuckets, unit_bucket

CAP_MULTIPLE = 100
"""The default cap is this many times the mean requests per unit of the units not listed
among the heaviest (pooled over both arms). Ordinary traffic is heavy-tailed: power users
send tens of times the mean, and capping them would weigh them less for no gain in
validity. A hundred times the mean leaves them be: where 1% of users send 300-2,000
requests and the mean is about 19 (the simulated heavy traffic of ``bench/aa.py``), the
cap is about 1,900, so only the top few of that 1% are touched, and by little; a bot
sending 5,000, or one client sending 30-50% of a stage's requests (tens of thousands),
comes down to the weight of a heavy user. Fifty times would already cut half of that 1%."""

Arm = Literal["treatment", "control"]


@dataclass(frozen=True, slots=True)
class CappedUnit:
    """A unit whose requests were over the cap: its counts before, and what was taken off."""

    arm: Arm
    unit: str
    requests: int
    errors: int
    dropped_requests: int
    dropped_errors: int


@dataclass(frozen=True, slots=True)
class Capping:
    """What :func:`capped` did: the cap applied (requests per unit per stage) and each unit
    capped; ``cap`` None where none applied (caps off, or nothing to take a mean of)."""

    cap: int | None = None
    units: tuple[CappedUnit, ...] = ()


def default_cap(data: FlagAggregates) -> int | None:
    """:data:`CAP_MULTIPLE` times the mean requests per unit of the units not listed among
    either arm's heaviest, pooled over both arms; None where no unlisted unit sent any."""
    listed = (*data.treatment.heaviest.units, *data.control.heaviest.units)
    rest = data.treatment.requests + data.control.requests - sum(u.requests for u in listed)
    if rest <= 0:
        return None
    units = max(data.treatment.units + data.control.units - len(listed), 1)
    return max(1, math.floor(CAP_MULTIPLE * rest / units))


def effective_cap(cap: int, data: FlagAggregates) -> int:
    """``cap`` raised to the most a unit an arm's list leaves out may have sent (a full
    list's smallest count, plus what partitions not listing it may hold, a unit they did not
    keep included), so that every unit over the cap is listed in both arms, and capped
    alike."""
    floors = [_unlisted_bound(arm.heaviest) for arm in (data.treatment, data.control)]
    return max(cap, *floors)


def _unlisted_bound(heaviest: Heaviest) -> int:
    if len(heaviest.units) < HEAVIEST_KEPT:
        return heaviest.unlisted_at_most
    return heaviest.units[-1].requests + heaviest.unlisted_at_most


def capped(data: FlagAggregates, cap: int | None) -> tuple[FlagAggregates, Capping]:
    """``data`` with each listed unit's requests over ``cap`` (raised by
    :func:`effective_cap`) counted as ``cap``, its errors in proportion, the same amounts off
    its arm's totals and its bucket of units; and what was capped. ``cap`` None: as it is."""
    if cap is None:
        return data, Capping()
    at = effective_cap(cap, data)
    treatment, found_t = _capped_arm("treatment", data.treatment, at)
    control, found_c = _capped_arm("control", data.control, at)
    if not (found_t or found_c):
        return data, Capping(at)
    return replace(data, treatment=treatment, control=control), Capping(at, found_t + found_c)


def _capped_arm(
    name: Arm, arm: ArmAggregate, cap: int
) -> tuple[ArmAggregate, tuple[CappedUnit, ...]]:
    found = tuple(_cut(name, unit, cap) for unit in arm.heaviest.units if unit.requests > cap)
    if not found:
        return arm, ()
    requests = sum(c.dropped_requests for c in found)
    errors = sum(c.dropped_errors for c in found)
    buckets = arm.buckets
    if buckets is not None:
        totals = list(buckets.totals)
        for c in found:
            base = unit_bucket(c.unit) * KIND_COUNT
            totals[base + REQUESTS] = max(0.0, totals[base + REQUESTS] - c.dropped_requests)
            totals[base + ERRORS] = max(0.0, totals[base + ERRORS] - c.dropped_errors)
        buckets = UnitBuckets(tuple(totals))
    kept = sorted((_kept(unit, cap) for unit in arm.heaviest.units), key=_order)
    heaviest = replace(arm.heaviest, units=tuple(kept))
    smaller = replace(
        arm,
        requests=max(0, arm.requests - requests),
        errors=max(0, arm.errors - errors),
        buckets=buckets,
        heaviest=heaviest,
    )
    return smaller, found


def _cut(arm: Arm, unit: UnitCount, cap: int) -> CappedUnit:
    n, e = unit.requests, unit.errors
    return CappedUnit(arm, unit.unit, n, e, n - cap, _dropped_errors(unit, cap))


def _dropped_errors(unit: UnitCount, cap: int) -> int:
    """e·(1 - c/n) of a unit's e errors in n requests, to whole errors."""
    return min(unit.errors, round(unit.errors * (1.0 - cap / unit.requests)))


def _order(unit: UnitCount) -> tuple[int, str]:
    return (-unit.requests, unit.unit)


def _kept(unit: UnitCount, cap: int) -> UnitCount:
    """The unit as the capped arm counts it."""
    if unit.requests <= cap:
        return unit
    return UnitCount(unit.unit, cap, unit.errors - _dropped_errors(unit, cap))
