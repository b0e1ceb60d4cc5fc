"""The ``new_failures`` guardrail: each fingerprint's failures per exposure, tested between arms.

A new failure is the regression an arm's error or exception rate sees last: a new exception
on 0.5% of treatment's exposures over a 2% base is +25% of the exception rate, but counted by
its own fingerprint it is 0.5% against none. So each fingerprint the store counts is tested on
its own, as ``exception_count`` is tested (a count per exposure, its variance on units:
:mod:`controller.core.stats.on_units`), on the failures counted since the store kept it:
the :data:`TESTED` most counted over both arms, never chosen by which arm has them, and the
rest together (the arm's exceptions less those named: a failed request's fingerprint, tested
as any other, is no exception and is not taken from them). The guardrail's alpha is split
evenly over the :data:`TESTED` fingerprints and the rest (Bonferroni), so it holds whichever
of them regresses; each test is always valid (docs/architecture.md, "What broke"). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from controller.core.rollouts import Guardrail, Plan
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.failures.counts import FailureCounts, is_request
from controller.core.stats.on_units import columns_effect, on_units_result
from controller.core.stats.sequential import (
    SequentialResult,
    count_rate_test,
    difference_test,
    poisson_variance,
)
from controller.core.stats.units import EXCEPTIONS, EXPOSURES, UNIT_BUCKETS

NEW_FAILURES: Final = "new_failures"
"""The guardrail's metric."""
TESTED = 16
"""Fingerprints tested at one look, the most counted over both arms (the store keeps as many)."""
TESTS = TESTED + 1
"""The tests one look takes: the tested fingerprints and the rest; each at alpha over this,
at the always-valid boundary and at a stage's final look alike."""
OTHER = "other"
"""The failures named by no tested fingerprint, tested together as one more."""


@dataclass(frozen=True, slots=True)
class FailureTest:
    """One fingerprint's failures in each arm, and their test (None: too little to test)."""

    key: str
    """The fingerprint's id, or :data:`OTHER`."""
    name: str
    example: str
    treatment: int
    control: int
    result: SequentialResult | None

    @property
    def regressed(self) -> bool:
        return self.result is not None and self.result.regressed


def failure_tests(
    guardrail: Guardrail, data: FlagAggregates, plan: Plan, alpha: float
) -> tuple[FailureTest, ...]:
    """Each tested fingerprint's test, the most counted first, then the rest's; each at
    ``alpha`` over ``TESTED + 1``."""
    t, c = data.treatment, data.control
    level = alpha / TESTS
    out = []
    for key, (mine, theirs) in _most_counted(t, c):
        known = mine or theirs or FailureCounts(key)
        columns = (_column(mine), _column(theirs))
        result = _tested(guardrail, (t, c), columns, plan, level)
        counts = round(math.fsum(columns[0])), round(math.fsum(columns[1]))
        out.append(FailureTest(key, known.name, known.example, *counts, result))
    rest = (_rest(t, out), _rest(c, out))
    result = _tested(guardrail, (t, c), rest, plan, level)
    counts = round(math.fsum(rest[0])), round(math.fsum(rest[1]))
    out.append(FailureTest(OTHER, "other failures", "", *counts, result))
    return tuple(out)


def deciding(tests: Sequence[FailureTest]) -> FailureTest | None:
    """The test the guardrail's verdict follows: of those that regressed, the smallest p;
    else, once every one is tested, the one whose bound is furthest from excluding harm;
    None while any is not yet tested and none regressed."""
    regressed = [test for test in tests if test.regressed]
    if regressed:
        return min(regressed, key=_p)
    if any(test.result is None for test in tests):
        return None
    return max(tests, key=_margin, default=None)


def new_failures_result(
    guardrail: Guardrail, data: FlagAggregates, plan: Plan, alpha: float
) -> SequentialResult | None:
    """The guardrail's result: the deciding fingerprint's (:func:`deciding`)."""
    found = deciding(failure_tests(guardrail, data, plan, alpha))
    return None if found is None else found.result


def _p(test: FailureTest) -> float:
    return 1.0 if test.result is None else test.result.p_value


def _margin(test: FailureTest) -> float:
    """How far the test's bound on harm is above its tolerance (larger: less proven)."""
    result = test.result
    if result is None:
        return math.inf
    return result.upper - result.tolerance


def _most_counted(
    t: ArmAggregate, c: ArmAggregate
) -> list[tuple[str, tuple[FailureCounts | None, FailureCounts | None]]]:
    keys = {*t.failed, *c.failed}

    def count(key: str) -> int:
        return sum(arm.failed[key].total for arm in (t, c) if key in arm.failed)

    ranked = sorted(keys, key=lambda key: (-count(key), key))[:TESTED]
    return [(key, (t.failed.get(key), c.failed.get(key))) for key in ranked]


def _column(counts: FailureCounts | None) -> list[float]:
    return [0.0] * UNIT_BUCKETS if counts is None else [float(n) for n in counts.buckets]


def _rest(arm: ArmAggregate, tested: Sequence[FailureTest]) -> list[float]:
    """The arm's exceptions less those its tested fingerprints of exceptions count, bucket by
    bucket: a failed request's fingerprint counts no exception, and takes none away."""
    if arm.buckets is None:
        return [0.0] * UNIT_BUCKETS
    out = arm.buckets.column(EXCEPTIONS)
    for test in tested:
        named = None if is_request(test.key) else arm.failed.get(test.key)
        if named is not None:
            out = [max(0.0, a - b) for a, b in zip(out, named.buckets, strict=True)]
    return out


def _tested(
    guardrail: Guardrail,
    arms: tuple[ArmAggregate, ArmAggregate],
    counts: tuple[Sequence[float], Sequence[float]],
    plan: Plan,
    alpha: float,
) -> SequentialResult | None:
    """One fingerprint's count per exposure between the arms, on units; None while either
    arm has fewer exposures than the plan's floor or too few buckets of units to say how
    they vary."""
    t, c = arms
    if min(t.exposures, c.exposures) < plan.min_metric_events:
        return None
    if t.buckets is None or c.buckets is None:
        return None
    count_t, count_c = round(math.fsum(counts[0])), round(math.fsum(counts[1]))
    rate_c = count_c / c.exposures if c.exposures else 0.0
    tolerance = guardrail.tolerance * rate_c if guardrail.relative else guardrail.tolerance
    independent = count_rate_test(
        count_t,
        t.exposures,
        count_c,
        c.exposures,
        tolerance=tolerance,
        alpha=alpha,
        n_tune=plan.n_tune,
    )
    spread = (
        poisson_variance(count_t, t.exposures),
        poisson_variance(count_c, c.exposures),
        poisson_variance(count_t + count_c, t.exposures + c.exposures),
    )
    columns = (
        (counts[0], t.buckets.column(EXPOSURES)),
        (counts[1], c.buckets.column(EXPOSURES)),
    )
    deff = columns_effect(columns, spread, (t.units, c.units))
    if deff is None:
        return None
    result = difference_test(
        delta=independent.delta,
        variance=independent.variance * deff,
        n=min(t.units, t.exposures) + min(c.units, c.exposures),
        direction=independent.direction,
        tolerance=independent.tolerance,
        alpha=independent.alpha,
        n_tune=independent.n_tune,
    )
    if math.isinf(result.half_width):
        return None
    return on_units_result(result, independent)
