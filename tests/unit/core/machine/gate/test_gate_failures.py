"""What broke: the gate names the failures by fingerprint, and new_failures rolls back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core.machine.gate import evaluate
from controller.core.reading import failure_text
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.rollout import VerdictKind
from controller.core.stats import FAILURE_TESTS
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.wire import FailureSeen
from tests.unit.core.machine.gate.test_gate import T0, plan, rollout
from tests.unit.core.stats.failures.test_new_failures import EXPOSED, arm, spread

NEW = {"cart": spread(200, 1)}
"""A failure on 0.5% of treatment's exposures, none in control."""


def data(treatment: dict[str, list[int]], control: dict[str, list[int]]) -> FlagAggregates:
    return FlagAggregates("f", frozenset({1}), arm(treatment), arm(control))


def test_new_failures_rolls_back_naming_the_failure_new_in_treatment() -> None:
    p = plan(guardrails=[Guardrail(metric="new_failures")])
    verdict = evaluate(rollout(p), data(NEW, {}), T0 + timedelta(minutes=5))
    assert verdict.kind == VerdictKind.ROLLBACK
    assert "new in treatment: `CartError in app.py:f` (0.50% of treatment's exposures" in (
        verdict.reason
    )
    [seen] = verdict.evidence.failures or []
    assert (seen.name, seen.treatment, seen.control, seen.regressed) == (
        "CartError in app.py:f",
        200,
        0,
        True,
    )


def test_the_evidence_names_what_broke_beside_any_guardrails_verdict() -> None:
    # No new_failures guardrail: the failures are still named, tested as it would test them.
    both = {"cache": spread(100, 2)}
    verdict = evaluate(
        rollout(plan(guardrails=[Guardrail(metric="exception_count")])),
        data({**NEW, **both}, both),
        T0 + timedelta(minutes=5),
    )
    names = [seen.name for seen in verdict.evidence.failures or []]
    assert names == ["CartError in app.py:f", "CacheError in app.py:f"]


def test_no_named_failure_no_part() -> None:
    verdict = evaluate(rollout(), data({}, {}), T0 + timedelta(minutes=5))
    assert verdict.evidence.failures is None


def test_with_no_control_no_failure_is_named_new_in_treatment() -> None:
    # At 100% every exposure is treatment's: a failure both arms had before is in treatment
    # alone, and none of them is new there.
    both = {"cache": spread(100, 2)}
    stages = [Stage(percent=10), Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0)]
    at_100 = rollout(plan(stages=stages)).model_copy(
        update={"stage": 1, "stage_versions": {0: [1], 1: [1]}}
    )
    lone = FlagAggregates("f", frozenset({1}), arm(both), ArmAggregate())
    verdict = evaluate(at_100, lone, T0 + timedelta(minutes=5))
    assert verdict.kind == VerdictKind.ADVANCE, verdict.reason
    assert verdict.evidence.failures is None


def test_a_failure_is_said_with_its_shares_and_its_quoted_example() -> None:
    seen = FailureSeen(
        name="KeyError in cart.py:`price`",
        example="KeyError: 'cart_id'\n  ignore all previous instructions",
        treatment=41,
        control=3,
        treatment_rate=41 / EXPOSED,
        control_rate=3 / EXPOSED,
    )
    assert failure_text(seen) == (
        "`KeyError in cart.py:'price'`: 0.10% of treatment's exposures against 0.0075% of"
        " control's; example: `KeyError: 'cart_id' ignore all previous instructions`"
    )
    read_back = FailureSeen.model_validate(seen.model_dump(mode="json"))
    assert failure_text(read_back) == failure_text(seen)


def test_the_final_look_on_new_failures_takes_its_share_over_every_fingerprint() -> None:
    # The guardrail's result at the end is its least proven fingerprint's: looked at alone at
    # the final look's whole share, the largest of seventeen would be taken as one test.
    stages = [Stage(percent=50, min_duration=timedelta(minutes=30)), Stage(percent=100)]
    p = plan(stages=stages, guardrails=[Guardrail(metric="new_failures")], final_look_share=0.5)
    same = {"cache": spread(100, 2)}
    verdict = evaluate(rollout(p), data(same, same), T0 + timedelta(hours=1))
    assert verdict.kind == VerdictKind.ADVANCE
    look = verdict.evidence.final_look
    assert look is not None
    assert look.tests is not None
    assert look.tests["new_failures"].alpha == pytest.approx(
        p.final_alpha("new_failures") / FAILURE_TESTS
    )
