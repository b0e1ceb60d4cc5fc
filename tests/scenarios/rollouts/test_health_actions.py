"""The health-action policy through the real broker, Redis and daemon."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.policy import HealthPolicy
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def errors_in_treatment(_state: dict[str, Any], arm: Arm) -> float:
    return 0.30 if arm is Arm.TREATMENT else 0.02


async def test_a_regression_the_plan_only_warns_about_alerts_once_and_rolls_nothing_back(
    scenario: Scenario,
) -> None:
    # Given apps whose treatment fails 30% of its requests against 2% on control
    scenario.start_daemon()
    scenario.run_apps("warned", errors=errors_in_treatment)
    # When a rollout runs under a plan whose policy only warns on a regression
    plan = Plan(
        name="warned",
        stages=[
            Stage(percent=10, min_duration=timedelta(seconds=3), min_units_per_arm=20),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.01,
        health_policy=HealthPolicy(guardrail_regression="warn"),
    )
    await scenario.start("warned", plan)
    # Then the regression is recorded as a warning naming the trigger and the policy entry
    warned = await scenario.until(
        lambda: scenario.observed.decision_where(flag="warned", action="warn"),
        timeout=120,
        what="the warning decision",
    )
    named = {
        "trigger": "guardrail_regression",
        "action": "warn",
        "policy_entry": "health_policy.guardrail_regression",
    }
    assert warned["outcome"] == "recorded"
    assert warned["phase_after"] == "running"
    assert warned["evidence"]["policy"] == named
    assert warned["evidence"]["breach"] == "error_rate"
    # ...with one warning alert
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="warned", kind="guardrail"),
        timeout=10,
        what="the guardrail warning",
    )
    assert alert["severity"] == "warning"
    assert alert["details"]["policy"] == named
    # ...and the rollout stays where it was, running, remembering the warning for the stage
    stored = await scenario.rollout("warned")
    assert stored is not None
    assert (stored.phase.value, stored.stage) == ("running", 0)
    assert stored.warned == ["guardrail_regression"]
    decisions = [d["action"] for d in scenario.observed.decisions if d["flag"] == "warned"]
    assert decisions == ["start", "warn"]
    alerts = [a for a in scenario.observed.alerts if a["flag"] == "warned"]
    assert [a["kind"] for a in alerts] == ["guardrail"]
