"""What the gate needs before it tests a metric, and the level it tests at."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from controller.core.common.histogram import BUCKET_COUNT, bucket_of
from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage, Watch
from controller.core.rollouts.rollout import Phase, Rollout, VerdictKind
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.guardrails import guardrail_result, metric_floor
from tests.support.documents import as_read

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
P95 = Guardrail(metric="latency_p95", tolerance=0.10, relative=True)
ERRORS = Guardrail(metric="error_rate")


def plan(*guardrails: Guardrail, **changes: object) -> Plan:
    stages = [Stage(percent=5, min_units_per_arm=0), Stage(percent=100)]
    return Plan(stages=stages, guardrails=list(guardrails), **changes)  # type: ignore[arg-type]


def rollout(the_plan: Plan) -> Rollout:
    return Rollout(
        flag="f",
        rollout_id="r",
        plan=the_plan,
        phase=Phase.RUNNING,
        stage=0,
        stage_started_at=T0,
        salt="s",
        flag_version=1,
        stage_versions={0: [1]},
        started_at=T0,
        updated_at=T0,
    )


def arm(hist: dict[int, int], *, errors: int = 0) -> ArmAggregate:
    counts = tuple(hist.get(i, 0) for i in range(BUCKET_COUNT))
    n = sum(counts)
    return ArmAggregate(
        units=n, requests=n, errors=errors, latency_count=n, latency_histogram=counts
    )


def newcomer() -> FlagAggregates:
    """#24: 14 treatment requests at 5%, three slowed by one hiccup, against 296 control."""
    rng = random.Random(24)
    control: dict[int, int] = {}
    for _ in range(296):
        index = bucket_of(rng.lognormvariate(math.log(2.0), 0.3))
        control[index] = control.get(index, 0) + 1
    treatment = arm({bucket_of(2.0): 11, bucket_of(5.0): 3})
    return FlagAggregates(
        flag="f", versions=frozenset({1}), treatment=treatment, control=arm(control)
    )


@pytest.mark.parametrize("min_metric_events", [1, 10, 150])
def test_the_newcomers_p95_of_14_requests_is_not_tested(min_metric_events: int) -> None:
    the_plan = plan(P95, min_metric_events=min_metric_events)
    verdict = evaluate(rollout(the_plan), newcomer(), T0 + timedelta(seconds=3))
    assert verdict.kind is VerdictKind.HOLD, verdict.reason
    assert as_read(verdict.evidence)["guardrails"]["latency_p95"] == "insufficient data"


@pytest.mark.parametrize(
    ("metric", "min_metric_events", "floor"),
    [
        ("latency_p95", 150, 150),
        ("latency_p95", 20, 73),
        ("latency_p99", 150, 381),
        ("latency_p99", 1_000, 1_000),
        ("error_rate", 20, 20),
    ],
)
def test_metric_floor(metric: str, min_metric_events: int, floor: int) -> None:
    assert metric_floor(metric, plan(min_metric_events=min_metric_events)) == floor


@pytest.mark.parametrize(
    ("n_t", "n_c", "tested"),
    [(149, 100_000, False), (100_000, 149, False), (150, 150, True), (150, 100_000, True)],
)
def test_every_arm_needs_the_minimum_events(n_t: int, n_c: int, tested: bool) -> None:
    # A treatment erring on every request: tested, that rolls back at once.
    data = FlagAggregates(
        flag="f",
        versions=frozenset({1}),
        treatment=arm({60: n_t}, errors=n_t),
        control=arm({60: n_c}),
    )
    result = guardrail_result(ERRORS, data, plan(ERRORS))
    assert (result is not None) is tested
    assert result is None or result.regressed


@pytest.mark.parametrize(
    ("the_plan", "guardrails", "stages"),
    [
        (DEFAULT_PLAN, 3, 4),  # 1, 5, 25 and 50%: at 100% there is no control arm
        (plan(ERRORS), 1, 1),
        (plan(ERRORS, P95, Guardrail(metric="latency_p99", dry_run=True)), 2, 1),
        (plan(Guardrail(metric="error_rate", dry_run=True)), 0, 1),
        (plan(ERRORS, watch=Watch(duration=timedelta(hours=1))), 1, 2),
        (plan(ERRORS, watch=Watch(duration=timedelta(hours=1), holdback_percent=0)), 1, 1),
        (Plan(stages=[Stage(percent=100)], guardrails=[ERRORS]), 1, 0),
    ],
)
def test_alpha_is_split_over_gating_guardrails_and_compared_stages(
    the_plan: Plan, guardrails: int, stages: int
) -> None:
    budget = the_plan.alpha_budget()
    assert (budget["guardrails"], budget["stages"]) == (guardrails, stages)
    tests = max(1, guardrails) * max(1, stages)
    assert the_plan.alpha_per_test == pytest.approx(the_plan.alpha / tests)
    assert budget["per_test"] == the_plan.alpha_per_test
