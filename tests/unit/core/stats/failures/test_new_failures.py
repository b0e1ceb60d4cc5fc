"""The new_failures guardrail: each fingerprint tested between arms on units, tables of cases."""

from __future__ import annotations

import random

import pytest

from controller.core.rollouts import Guardrail, Stage
from controller.core.rollouts.plan import Plan
from controller.core.stats import ArmAggregate, FailureCounts, FlagAggregates, guardrail_result
from controller.core.stats.failures.counts import REQUEST_MARK, is_request
from controller.core.stats.failures.testing import OTHER, TESTED, deciding, failure_tests
from controller.core.stats.units import EXCEPTIONS, EXPOSURES, KIND_COUNT, UNIT_BUCKETS, UnitBuckets

PLAN = Plan(stages=[Stage(percent=50), Stage(percent=100)], guardrails=[])
GUARD = Guardrail(metric="new_failures")
ALPHA = 0.05
EXPOSED = 40_000
"""Exposures each arm, spread over every bucket."""


def arm(failed: dict[str, list[int]], *, unnamed: list[int] | None = None) -> ArmAggregate:
    """An arm of EXPOSED exposures (as many units), its fingerprints' counts by bucket."""
    totals = [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    for b in range(UNIT_BUCKETS):
        totals[b * KIND_COUNT + EXPOSURES] = EXPOSED / UNIT_BUCKETS
    named = {
        k: FailureCounts(f"{k.title()}Error in app.py:f", "", tuple(v)) for k, v in failed.items()
    }
    for column in [*failed.values(), *([unnamed] if unnamed else [])]:
        for b, n in enumerate(column):
            totals[b * KIND_COUNT + EXCEPTIONS] += n
    return ArmAggregate(
        exposures=EXPOSED, units=EXPOSED, buckets=UnitBuckets(tuple(totals)), failed=named
    )


def spread(n: int, seed: int) -> list[int]:
    """``n`` failures of as many units, each in a random bucket."""
    rng = random.Random(seed)
    out = [0] * UNIT_BUCKETS
    for _ in range(n):
        out[rng.randrange(UNIT_BUCKETS)] += 1
    return out


def one_bucket(n: int) -> list[int]:
    return [n] + [0] * (UNIT_BUCKETS - 1)


def flag(t: ArmAggregate, c: ArmAggregate) -> FlagAggregates:
    return FlagAggregates("f", frozenset({1}), t, c)


@pytest.mark.parametrize(
    ("treatment", "control", "regressed"),
    [
        # one new failure on 0.5% of treatment's exposures, none in control
        ({"a": spread(200, 1)}, {}, "a"),
        # the same in both arms
        ({"a": spread(200, 1)}, {"a": spread(200, 2)}, None),
        # common in both, a little more in treatment: not beyond chance at this size
        ({"a": spread(800, 3)}, {"a": spread(760, 4)}, None),
        # 200 failures of one unit (one bucket): that unit alone does not decide
        ({"a": one_bucket(200)}, {}, None),
        # new in control: a failure treatment fixed is not harm
        ({}, {"a": spread(200, 5)}, None),
    ],
)
def test_a_fingerprint_new_in_treatment_regresses_and_is_named(
    treatment: dict[str, list[int]], control: dict[str, list[int]], regressed: str | None
) -> None:
    tests = failure_tests(GUARD, flag(arm(treatment), arm(control)), PLAN, ALPHA)
    found = deciding(tests)
    assert found is not None
    assert (found.key if found.regressed else None) == regressed
    if regressed:
        assert found.name == f"{regressed.title()}Error in app.py:f"
        assert (found.treatment, found.control) == (200, 0)


def test_failures_no_fingerprint_names_are_tested_together() -> None:
    t = arm({"a": spread(100, 6)}, unnamed=spread(300, 7))
    c = arm({"a": spread(100, 8)})
    tests = failure_tests(GUARD, flag(t, c), PLAN, ALPHA)
    assert [test.key for test in tests] == ["a", OTHER]
    other = tests[-1]
    assert (other.treatment, other.control, other.regressed) == (300, 0, True)


def test_only_the_most_counted_fingerprints_are_tested_each_at_its_share_of_alpha() -> None:
    failed = {f"k{i:02d}": spread(10 + i, i) for i in range(TESTED + 4)}
    tests = failure_tests(GUARD, flag(arm(failed), arm(failed)), PLAN, ALPHA)
    assert [t.key for t in tests[:-1]] == [f"k{i:02d}" for i in range(TESTED + 3, 3, -1)]
    assert all(t.result is not None and t.result.alpha == ALPHA / (TESTED + 1) for t in tests)


def test_a_relative_tolerance_is_taken_against_each_fingerprints_own_control_rate() -> None:
    t, c = arm({"a": spread(1000, 9)}), arm({"a": spread(800, 10)})
    strict = deciding(failure_tests(GUARD, flag(t, c), PLAN, ALPHA))
    lenient = deciding(
        failure_tests(
            GUARD.model_copy(update={"tolerance": 1.0, "relative": True}), flag(t, c), PLAN, ALPHA
        )
    )
    assert strict is not None
    assert strict.regressed
    assert lenient is not None
    assert not lenient.regressed


@pytest.mark.parametrize("exposed", [0, 50])
def test_too_few_exposures_are_not_tested(exposed: int) -> None:
    t = arm({"a": spread(20, 11)})
    t = ArmAggregate(exposures=exposed, units=exposed, buckets=t.buckets, failed=t.failed)
    assert guardrail_result(GUARD, flag(t, arm({})), PLAN) is None


def test_the_guardrail_follows_its_deciding_fingerprint() -> None:
    data = flag(arm({"a": spread(200, 12), "b": spread(50, 13)}), arm({"b": spread(50, 14)}))
    result = guardrail_result(GUARD, data, PLAN)
    assert result is not None
    assert result.regressed
    assert result.unit_of_analysis == "unit"
    assert result.delta == pytest.approx(200 / EXPOSED)


REQUEST = REQUEST_MARK + "5f0c4b0e9a1d2c3b"
"""A failed request's fingerprint, as the store keys one."""


def with_requests(
    exceptions: dict[str, list[int]], requests: dict[str, list[int]], unnamed: list[int]
) -> ArmAggregate:
    """An arm whose named ``exceptions`` and ``unnamed`` ones are its exceptions, and whose
    named failed ``requests`` are none of them."""
    plain = arm(exceptions, unnamed=unnamed)
    named = {k: FailureCounts(f"5xx GET /{k}", "", tuple(v)) for k, v in requests.items()}
    return ArmAggregate(
        exposures=plain.exposures,
        units=plain.units,
        buckets=plain.buckets,
        failed={**plain.failed, **named},
    )


@pytest.mark.parametrize(
    ("exceptions", "requests", "unnamed", "rest"),
    [
        # the failed requests named take nothing from the exceptions no name counts
        ({}, {REQUEST: spread(500, 20)}, spread(300, 21), 300),
        ({"a": spread(100, 22)}, {REQUEST: spread(500, 23)}, spread(300, 24), 300),
        # even where they are more than all the exceptions, bucket by bucket
        ({}, {REQUEST: one_bucket(900)}, one_bucket(40), 40),
        # the exceptions named are taken from them, as before
        ({"a": spread(100, 25)}, {}, spread(60, 26), 60),
        ({"a": spread(100, 27)}, {REQUEST: spread(100, 28)}, [0] * UNIT_BUCKETS, 0),
    ],
)
def test_the_rest_is_the_exceptions_no_exception_name_counts(
    exceptions: dict[str, list[int]],
    requests: dict[str, list[int]],
    unnamed: list[int],
    rest: int,
) -> None:
    t = with_requests(exceptions, requests, unnamed)
    tests = failure_tests(GUARD, flag(t, arm({})), PLAN, ALPHA)
    assert {test.key for test in tests[:-1]} == {*exceptions, *requests}
    other = tests[-1]
    assert (other.key, other.treatment, other.control) == (OTHER, rest, 0)


def test_a_failed_request_new_in_treatment_is_tested_as_a_fingerprint() -> None:
    t = with_requests({}, {REQUEST: spread(200, 29)}, [0] * UNIT_BUCKETS)
    found = deciding(failure_tests(GUARD, flag(t, arm({})), PLAN, ALPHA))
    assert found is not None
    assert (found.key, found.name, found.regressed) == (REQUEST, f"5xx GET /{REQUEST}", True)
    assert (found.treatment, found.control) == (200, 0)


@pytest.mark.parametrize(
    ("key", "failed_request"),
    [(REQUEST, True), ("5f0c4b0e9a1d2c3b", False), ("a", False), (OTHER, False)],
)
def test_a_failed_requests_fingerprint_is_told_by_its_key(key: str, failed_request: bool) -> None:
    assert is_request(key) is failed_request
