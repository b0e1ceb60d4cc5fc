"""The gate with a guardrail on one named conversion: its key in the evidence, the
name's counts beside each arm's, what a stage waits for, and what a regression says."""

from __future__ import annotations

from datetime import timedelta

from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats.aggregates import ArmAggregate, Conversions, FlagAggregates
from tests.support.documents import as_read
from tests.unit.core.machine.gate.test_gate import LATE, T0, rollout

CHECKOUT = Guardrail(metric="conversion_rate", conversion="checkout_completed")


def named_plan(*guardrails: Guardrail) -> Plan:
    return Plan(
        stages=[
            Stage(percent=10, min_duration=timedelta(minutes=30), min_units_per_arm=1000),
            Stage(percent=100, min_duration=timedelta(0)),
        ],
        guardrails=list(guardrails),
    )


def arm(units: int, checkout: float, total: float = 0.15, *, other: int = 0) -> ArmAggregate:
    """An arm of ``units`` units exposed twice each, converting at these rates per exposure."""
    exposures = 2 * units
    checkouts, conversions = round(checkout * exposures), round(total * exposures)
    named = {
        "checkout_completed": Conversions(checkouts),
        "signup": Conversions(conversions - checkouts),
    }
    if other:
        named["~other"] = Conversions(other)
    return ArmAggregate(exposures=exposures, units=units, conversions=conversions, named=named)


def data(t: ArmAggregate, c: ArmAggregate) -> FlagAggregates:
    return FlagAggregates(flag="f", versions=frozenset({1}), treatment=t, control=c)


def treated(checkout: float, total: float = 0.15, *, other: int = 0) -> ArmAggregate:
    return arm(1_111, checkout, total, other=other)  # 10% of the units, as the stage splits


def control(checkout: float, total: float = 0.15) -> ArmAggregate:
    return arm(10_000, checkout, total)


def test_the_named_guardrail_regresses_alone_and_says_so() -> None:
    plan = named_plan(Guardrail(metric="conversion_rate"), CHECKOUT)
    verdict = evaluate(rollout(plan), data(treated(0.025), control(0.05)), LATE)
    assert verdict.kind is VerdictKind.ROLLBACK
    evidence = as_read(verdict.evidence)
    assert evidence["breach"] == "conversion_rate:checkout_completed"
    assert verdict.reason.startswith("conversion rate of checkout_completed -2.5 pp")
    assert "(-50%)" in verdict.reason
    guardrails = evidence["guardrails"]
    assert set(guardrails) == {"conversion_rate", "conversion_rate:checkout_completed"}
    assert guardrails["conversion_rate"]["regressed"] is False
    assert guardrails["conversion_rate:checkout_completed"]["regressed"] is True
    # The counts the test was on, beside each arm's total.
    assert evidence["arms"]["treatment"]["conversions"] == 333
    assert evidence["arms"]["treatment"]["named_conversions"] == {"checkout_completed": 56}
    assert evidence["arms"]["control"]["named_conversions"] == {"checkout_completed": 1000}


def test_a_plan_naming_no_conversion_adds_no_named_counts() -> None:
    plan = named_plan(Guardrail(metric="conversion_rate"))
    verdict = evaluate(rollout(plan), data(treated(0.04), control(0.05)), LATE)
    assert verdict.kind is VerdictKind.ADVANCE
    assert "named_conversions" not in as_read(verdict.evidence)["arms"]["treatment"]


def test_conversions_of_names_past_the_cap_are_shown_beside_the_plan_s() -> None:
    verdict = evaluate(
        rollout(named_plan(CHECKOUT)), data(treated(0.05, other=7), control(0.05)), LATE
    )
    assert as_read(verdict.evidence)["arms"]["treatment"]["named_conversions"] == {
        "checkout_completed": 111,
        "~other": 7,
    }
    assert as_read(verdict.evidence)["arms"]["control"]["named_conversions"] == {
        "checkout_completed": 1000
    }


def test_a_stage_waits_for_the_named_guardrail_s_own_events() -> None:
    value = Guardrail(metric="conversion_value", conversion="checkout_completed")
    plan = named_plan(Guardrail(metric="conversion_value"), value)

    def valued(units: int) -> ArmAggregate:
        return ArmAggregate(
            exposures=2 * units,
            units=units,
            conversions=3000,
            conversion_values=3000,
            conversion_value_sum=30_000.0,
            conversion_value_sq=400_000.0,
            named={"checkout_completed": Conversions(40, 40, 400.0, 5000.0)},
        )

    verdict = evaluate(rollout(plan), data(valued(1_111), valued(10_000)), T0 + timedelta(hours=1))
    assert verdict.kind is VerdictKind.HOLD
    assert verdict.reason == (
        "conversion_value:checkout_completed not yet tested: 40 of 150 events in treatment"
    )
    assert as_read(verdict.evidence)["guardrails"]["conversion_value:checkout_completed"] == (
        "insufficient data"
    )
    assert isinstance(as_read(verdict.evidence)["guardrails"]["conversion_value"], dict)
