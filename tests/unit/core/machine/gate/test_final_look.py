"""The final look: one fixed-horizon test per gating guardrail when a stage would move on.

A plan spends ``final_look_share`` of each guardrail's level in it (0.5, by default); the
always-valid boundary keeps the rest and watches every look. The look is taken once per
stage: a stage that waits after it (an advisor, an approval, a window) is watched by the
always-valid boundary alone, and a passed stage's late evidence too.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta

import pytest

from controller.core.machine.final_look import held_for_advice
from controller.core.machine.gate import evaluate
from controller.core.machine.machine import late_regression, step
from controller.core.rollouts import Stage
from controller.core.rollouts.advice import Advice, Opinion
from controller.core.rollouts.policy import HealthPolicy
from controller.core.rollouts.rollout import GateInput, Phase, Verdict, VerdictKind
from controller.core.stats import FlagAggregates, fixed_horizon_test
from controller.core.stats.sequential import Direction, SequentialResult, difference_test
from tests.unit.core.machine.gate import test_gate as table

HYBRID = table.plan(final_look_share=0.5)
SLIGHT = table.data(table.arm(units=1_111, errors=600), table.arm())
"""+20% errors: shown by a fixed-horizon test at the stage's end, not by the boundary."""
CLEAR = table.data(table.arm(units=1_111, errors=700), table.arm())
"""+40% errors: shown by the always-valid boundary at any look."""


@pytest.mark.parametrize(
    ("case", "agg", "now", "share", "kind", "decided_by", "looked"),
    [
        ("healthy at its end: passes the look", table.HEALTHY, table.LATE, 0.5,
         VerdictKind.ADVANCE, "final_look", True),
        ("+20% at its end: the look rolls back", SLIGHT, table.LATE, 0.5,
         VerdictKind.ROLLBACK, "final_look", True),
        ("+20% before its end: no look yet", SLIGHT, table.EARLY, 0.5,
         VerdictKind.HOLD, None, False),
        ("+40% before its end: the boundary rolls back", CLEAR, table.EARLY, 0.5,
         VerdictKind.ROLLBACK, "always_valid", False),
        ("+20% with no final look: advances", SLIGHT, table.LATE, 0.0,
         VerdictKind.ADVANCE, None, False),
        ("a larger share: the look is sharper still", SLIGHT, table.LATE, 0.9,
         VerdictKind.ROLLBACK, "final_look", True),
    ],
)  # fmt: skip
def test_the_final_look_decides_at_the_stages_end(
    case: str,
    agg: FlagAggregates,
    now: datetime,
    share: float,
    kind: VerdictKind,
    decided_by: str | None,
    looked: bool,
) -> None:
    the_plan = table.plan(final_look_share=share)
    verdict = evaluate(table.rollout(the_plan), agg, now)
    assert verdict.kind is kind, verdict.reason
    assert verdict.evidence.decided_by == decided_by
    look = verdict.evidence.final_look
    assert (look is not None and look.tests is not None) is looked
    if kind is VerdictKind.ROLLBACK:
        assert verdict.evidence.breach == "error_rate"
    if looked:
        assert look is not None
        assert look.tests is not None
        assert look.at == now.isoformat()
        assert look.share == share
        assert set(look.tests) == {"error_rate", "latency_p99", "conversion_rate"}
        error = look.tests["error_rate"]
        assert error.alpha == pytest.approx(the_plan.final_alpha("error_rate"))
        assert error.regressed is (kind is VerdictKind.ROLLBACK)


def test_each_test_runs_at_what_the_look_leaves_of_its_level() -> None:
    verdict = evaluate(table.rollout(HYBRID), table.HEALTHY, table.EARLY)
    tests = verdict.evidence.guardrails or {}
    error = tests["error_rate"]
    assert not isinstance(error, str)
    assert error.alpha == pytest.approx(HYBRID.alpha_for("error_rate") / 2)
    assert verdict.evidence.alpha is not None
    assert verdict.evidence.alpha.final_look == 0.5


def test_a_stage_at_100_percent_has_no_final_look() -> None:
    the_plan = HYBRID.model_copy(update={"stages": [Stage(percent=100)]})
    rollout = table.rollout(the_plan)
    verdict = evaluate(rollout, table.data(table.arm(), table.arm(units=0)), table.LATE)
    assert verdict.evidence.final_look is None


def test_the_look_is_taken_once_and_recorded_while_the_stage_waits() -> None:
    # The advisor holds the passed stage: the look is recorded, and the next gate, on data
    # the look would now reject, does not look again (only the boundary watches).
    rollout = table.rollout(HYBRID)
    passed = evaluate(rollout, table.HEALTHY, table.LATE)
    held, _ = step(rollout, _held_by_advisor(passed))
    assert held is not None
    assert held.final_look_at == table.LATE
    assert held.stage == 0
    later = table.LATE + timedelta(minutes=5)
    again = evaluate(held, SLIGHT, later)
    assert again.kind is VerdictKind.ADVANCE, again.reason
    look = again.evidence.final_look
    assert look is not None
    assert look.tests is None
    assert look.at == table.LATE.isoformat()
    advanced, _ = step(held, GateInput(verdict=again, now=later))
    assert advanced is not None
    assert advanced.stage == 1
    assert advanced.final_look_at is None


@pytest.mark.parametrize("action", ["warn", "hold"])
def test_a_look_that_shows_harm_is_taken_once_whatever_the_policy_does(action: str) -> None:
    # A policy that only warns (or pauses) keeps the stage: the look that showed harm is
    # recorded, so later gates do not spend its share of the level again.
    policy = HealthPolicy.model_validate({"guardrail_regression": action})
    the_plan = table.plan(final_look_share=0.5, health_policy=policy)
    rollout = table.rollout(the_plan)
    verdict = evaluate(rollout, SLIGHT, table.LATE)
    assert verdict.evidence.decided_by == "final_look", verdict.reason
    after, _ = step(rollout, GateInput(verdict=verdict, now=table.LATE))
    assert after is not None
    assert after.final_look_at == table.LATE
    later = table.LATE + timedelta(minutes=5)
    again = evaluate(after, SLIGHT, later)
    look = again.evidence.final_look
    assert look is not None
    assert look.tests is None
    assert look.at == table.LATE.isoformat()


def test_late_evidence_of_a_passed_stage_is_not_looked_at_again() -> None:
    rollout = table.rollout(HYBRID).model_copy(
        update={"stage": 1, "stage_versions": {0: [1], 1: [2]}, "phase": Phase.RUNNING}
    )
    assert late_regression(rollout, {0: SLIGHT}, table.LATE) is None
    assert late_regression(rollout, {0: CLEAR}, table.LATE) is not None


def _held_by_advisor(verdict: Verdict) -> GateInput:
    advice = Opinion(Advice(action="hold", confidence=0.9, rationale="wait"), "m", 1.0)
    return GateInput(verdict=verdict, now=table.LATE, advice=advice, advisor_mode="gating")


def _result(
    delta: float, variance: float, direction: Direction, tolerance: float = 0.0
) -> SequentialResult:
    return difference_test(
        delta=delta, variance=variance, n=1000, direction=direction, tolerance=tolerance
    )


@pytest.mark.parametrize(
    ("delta", "variance", "direction", "tolerance", "alpha", "regressed", "bound"),
    [
        # z = 2 against z_0.99 = 2.326: not shown; at 5% (1.645) it is.
        (2.0, 1.0, "lower_is_better", 0.0, 0.01, False, 2.0 - 2.3263),
        (2.0, 1.0, "lower_is_better", 0.0, 0.05, True, 2.0 - 1.6449),
        # The tolerance moves the line harm must cross.
        (2.0, 1.0, "lower_is_better", 0.5, 0.05, False, 2.0 - 1.6449),
        # Higher is better: harm is a fall.
        (-2.0, 1.0, "higher_is_better", 0.0, 0.05, True, -2.0 + 1.6449),
        (2.0, 1.0, "higher_is_better", 0.0, 0.05, False, 2.0 + 1.6449),
        # No variance or an unbounded one: never a regression.
        (2.0, 0.0, "lower_is_better", 0.0, 0.05, False, 2.0),
        (2.0, math.inf, "lower_is_better", 0.0, 0.05, False, -math.inf),
    ],
)
def test_the_fixed_horizon_test(
    delta: float,
    variance: float,
    direction: Direction,
    tolerance: float,
    alpha: float,
    regressed: bool,
    bound: float,
) -> None:
    look = fixed_horizon_test(_result(delta, variance, direction, tolerance), alpha)
    assert look.regressed is regressed
    assert look.bound == pytest.approx(bound, abs=1e-4)
    assert (look.p_value < alpha) is regressed


def test_a_level_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        fixed_horizon_test(_result(1.0, 1.0, "lower_is_better"), 0.5)


def test_a_look_awaiting_the_advisor_is_recorded_before_the_advice() -> None:
    # In gating mode the advice is asked in the background: the gate first records the look
    # with a hold, so the gates that run meanwhile and the re-check do not look again.
    rollout = table.rollout(HYBRID)
    passed = evaluate(rollout, table.HEALTHY, table.LATE)
    hold = held_for_advice(passed)
    assert hold is not None
    assert hold.kind is VerdictKind.HOLD
    recorded, actions = step(rollout, GateInput(verdict=hold, now=table.LATE))
    assert recorded is not None
    assert recorded.final_look_at == table.LATE
    assert recorded.stage == 0
    assert actions == []
    assert held_for_advice(evaluate(recorded, table.HEALTHY, table.LATE)) is None


def test_at_the_planned_end_the_look_is_taken_on_what_is_tested() -> None:
    # p99 is not yet tested (too few requests in treatment) when the stage's minimum time
    # and units are reached: the look is taken there on the error rate, which rolls back,
    # or which passes and is recorded while the stage waits for p99.
    few = table.arm(units=1_111, errors=600)
    hist = _few(few.latency_histogram)
    few = dataclasses.replace(few, latency_histogram=hist, latency_count=sum(hist))
    verdict = evaluate(table.rollout(HYBRID), table.data(few, table.arm()), table.LATE)
    assert verdict.kind is VerdictKind.ROLLBACK, verdict.reason
    assert verdict.evidence.decided_by == "final_look"
    healthy = dataclasses.replace(few, errors=500)
    held = evaluate(table.rollout(HYBRID), table.data(healthy, table.arm()), table.LATE)
    assert held.kind is VerdictKind.HOLD
    assert "latency_p99 not yet tested" in held.reason
    look = held.evidence.final_look
    assert look is not None
    assert look.tests is not None
    assert "latency_p99" not in look.tests
    recorded, _ = step(table.rollout(HYBRID), GateInput(verdict=held, now=table.LATE))
    assert recorded is not None
    assert recorded.final_look_at == table.LATE


def _few(histogram: tuple[int, ...]) -> tuple[int, ...]:
    """A histogram of 100 requests: too few to bound a p99."""
    total = sum(histogram)
    return tuple(count * 100 // total for count in histogram)
