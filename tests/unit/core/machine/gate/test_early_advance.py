"""Early advance, simulated through the real gate: does ending a stage early cost safety?

Each simulated stage peeks once a minute for a 50-minute minimum duration; at
every peek each arm gets 1,000 requests and about 200 new units (a 50% stage,
the split drawn at random) and :func:`controller.core.machine.gate.evaluate` decides.
A stage ends at the first advance, rollback or pause. Run with ``pytest -s``
to see the figures.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from tests.unit.core.machine.gate.test_gate import rollout
from tests.unit.core.stats.test_stats import binomial

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MIN_PEEKS = 50
"""The stage's minimum duration, in one-minute peeks."""
REQUESTS = 1_000
NEW_UNITS = 400
BASE_RATE = 0.02
TOLERANCE = 0.005
"""Half a percentage point of error rate: harm below this is acceptable."""
EXPERIMENTS = 300
ALPHA = 0.05


def plan(*, early: bool) -> Plan:
    return Plan(
        stages=[
            Stage(percent=50, min_duration=timedelta(minutes=MIN_PEEKS), min_units_per_arm=2_000),
            Stage(percent=100, min_duration=timedelta(0)),
        ],
        guardrails=[Guardrail(metric="error_rate", tolerance=TOLERANCE)],
        alpha=ALPHA,
        n_tune=50_000,
        early_advance=early,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: VerdictKind
    minutes: int


def run_stage(rng: random.Random, the_plan: Plan, rate_t: float) -> Outcome:
    """One stage from its start to the first verdict that ends it."""
    state = rollout(the_plan)
    units_t = units_c = errors_t = errors_c = 0
    for minute in range(1, 3 * MIN_PEEKS + 1):
        joined = binomial(rng, NEW_UNITS, 0.5)
        units_t, units_c = units_t + joined, units_c + NEW_UNITS - joined
        errors_t += binomial(rng, REQUESTS, rate_t)
        errors_c += binomial(rng, REQUESTS, BASE_RATE)
        requests = minute * REQUESTS
        data = FlagAggregates(
            flag="f",
            versions=frozenset({1}),
            treatment=ArmAggregate(units=units_t, requests=requests, errors=errors_t),
            control=ArmAggregate(units=units_c, requests=requests, errors=errors_c),
        )
        verdict = evaluate(state, data, T0 + timedelta(minutes=minute))
        if verdict.kind is not VerdictKind.HOLD:
            return Outcome(verdict.kind, minute)
    raise AssertionError("a stage with traffic must end")


def simulate(rate_t: float, *, early: bool, seed: int) -> list[Outcome]:
    rng = random.Random(seed)
    the_plan = plan(early=early)
    return [run_stage(rng, the_plan, rate_t) for _ in range(EXPERIMENTS)]


def share(outcomes: list[Outcome], kind: VerdictKind) -> float:
    return sum(o.kind is kind for o in outcomes) / len(outcomes)


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, bool], list[Outcome]]:
    """The same random streams with and without early advance, for A/A and for 2x errors."""
    return {
        (name, early): simulate(rate, early=early, seed=seed)
        for name, rate, seed in (
            ("aa", BASE_RATE, 16_001),
            ("2x", 2 * BASE_RATE, 16_002),
            ("edge", BASE_RATE + TOLERANCE, 16_003),
        )
        for early in (False, True)
    }


def test_aa_false_rollbacks_stay_below_alpha(runs: dict[tuple[str, bool], list[Outcome]]) -> None:
    plain, early = (
        share(runs["aa", False], VerdictKind.ROLLBACK),
        share(runs["aa", True], VerdictKind.ROLLBACK),
    )
    print(
        f"\nA/A, {EXPERIMENTS} stages: false rollback rate {early:.4f} with early advance,"
        f" {plain:.4f} without (alpha {ALPHA})"
    )
    assert early <= ALPHA
    assert early <= plain, "the same streams: stopping earlier never adds a rollback"


def test_doubled_error_rate_is_still_caught(runs: dict[tuple[str, bool], list[Outcome]]) -> None:
    plain, early = (
        share(runs["2x", False], VerdictKind.ROLLBACK),
        share(runs["2x", True], VerdictKind.ROLLBACK),
    )
    caught = [o.minutes for o in runs["2x", True] if o.kind is VerdictKind.ROLLBACK]
    print(
        f"\n2% vs 4% errors, {EXPERIMENTS} stages: caught {early:.4f} with early advance,"
        f" {plain:.4f} without; median minute of the rollback {statistics.median(caught):g}"
    )
    assert early >= 0.95
    assert share(runs["2x", True], VerdictKind.ADVANCE) <= 1 - 0.95


def test_healthy_stages_save_time(runs: dict[tuple[str, bool], list[Outcome]]) -> None:
    plain = [o.minutes for o in runs["aa", False] if o.kind is VerdictKind.ADVANCE]
    early = [o.minutes for o in runs["aa", True] if o.kind is VerdictKind.ADVANCE]
    saved = statistics.median(MIN_PEEKS - m for m in early)
    print(
        f"\nA/A, {len(early)} stages advanced: median stage time {statistics.median(early):g} min"
        f" with early advance against {statistics.median(plain):g} min without;"
        f" median saved {saved:g} min of {MIN_PEEKS} ({saved / MIN_PEEKS:.0%})"
    )
    assert set(plain) == {MIN_PEEKS}, "without the option a healthy stage waits its minimum"
    assert saved > 0


def test_harm_at_the_tolerance_rarely_advances_early(
    runs: dict[tuple[str, bool], list[Outcome]],
) -> None:
    """The bound's other side: harm just at the tolerance is not shown harmless but by chance."""
    early = [o for o in runs["edge", True] if o.kind is VerdictKind.ADVANCE]
    before = sum(o.minutes < MIN_PEEKS for o in early) / EXPERIMENTS
    print(
        f"\n2% vs 2.5% errors (harm = the tolerance), {EXPERIMENTS} stages: advanced before the"
        f" minimum time {before:.4f} (alpha {ALPHA})"
    )
    assert before <= ALPHA
