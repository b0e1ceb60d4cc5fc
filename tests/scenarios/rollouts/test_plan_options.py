"""Plan options through the real broker, Redis and daemon: dry-run guardrails, early advance."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario, manual_plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def errors_in_treatment(_state: dict[str, Any], arm: Arm) -> float:
    return 0.30 if arm is Arm.TREATMENT else 0.02


def trial_plan() -> Plan:
    """Error rate on trial (dry run); only p99 latency, which stays healthy, may act."""
    return Plan(
        name="trial",
        stages=[
            Stage(percent=10, min_duration=timedelta(seconds=6), min_units_per_arm=20),
            Stage(percent=50, min_duration=timedelta(seconds=3), min_units_per_arm=20),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[
            Guardrail(metric="error_rate", dry_run=True),
            Guardrail(metric="latency_p99", tolerance=0.5, relative=True),
        ],
        alpha=0.01,
    )


async def test_a_regressing_dry_run_guardrail_alerts_but_never_rolls_back(
    scenario: Scenario,
) -> None:
    # Given apps whose treatment fails 30% of its requests against 2% on control
    scenario.start_daemon()
    scenario.run_apps("trial", errors=errors_in_treatment)
    # When a rollout runs with the error rate only on trial
    await scenario.start("trial", trial_plan())
    # Then it still walks to 100%
    done = await scenario.until(
        lambda: scenario.observed.decision_where(flag="trial", action="complete"),
        timeout=120,
        what="the rollout to complete",
    )
    assert done["phase_after"] == "completed"
    decisions = [d for d in scenario.observed.decisions if d["flag"] == "trial"]
    assert [d["action"] for d in decisions] == ["start", "advance", "advance", "complete"]
    # ...every gate decision records the trial guardrail, flagged as a dry run
    gated = [d for d in decisions if d["kind"] == "gate"]
    assert all("dry_run" in d["evidence"] for d in gated)
    first = gated[0]["evidence"]
    assert first["dry_run"] == {"error_rate": {"would": "rollback"}}
    assert first["guardrails"]["error_rate"]["regressed"] is True
    assert "breach" not in first
    # ...and the breach was alerted, at most once per stage, as information
    alerts = [a for a in scenario.observed.alerts if a["flag"] == "trial"]
    assert alerts
    assert {a["kind"] for a in alerts} == {"guardrail"}
    assert {a["severity"] for a in alerts} == {"info"}
    stages = [a["details"]["stage"] for a in alerts]
    assert len(stages) == len(set(stages))
    assert alerts[0]["details"]["breaches"] == ["error_rate"]
    assert alerts[0]["details"]["dry_run"]["error_rate"]["would"] == "rollback"
    # The flag state comes on its own topic: wait for the completed one.
    last = await scenario.until(
        lambda: next(
            (
                s
                for s in reversed(scenario.observed.flag_states)
                if s["flag"] == "trial" and s["status"] == "completed"
            ),
            None,
        ),
        timeout=10,
        what="the completed flag state",
    )
    assert last["percent"] == 100


async def test_a_healthy_stage_advances_before_its_long_minimum(scenario: Scenario) -> None:
    # Given healthy apps and a plan whose first stage lasts at least ten minutes
    plan = Plan(
        name="early",
        stages=[
            Stage(percent=50, min_duration=timedelta(minutes=10), min_units_per_arm=200),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate", tolerance=0.05)],
        early_advance=True,
    )
    scenario.start_daemon()
    scenario.run_apps("early")
    # When the rollout starts with early advance
    await scenario.start("early", plan)
    # Then the strong evidence ends the stage long before ten minutes
    advance = await scenario.until(
        lambda: scenario.observed.decision_where(flag="early", action="advance"),
        timeout=120,
        what="the early advance",
    )
    assert advance["stage"] == 1
    assert advance["reason"].startswith("early advance")
    assert advance["evidence"]["early_advance"] is True
    test = advance["evidence"]["guardrails"]["error_rate"]
    assert test["upper"] <= test["tolerance"] == 0.05
    assert min(arm["units"] for arm in advance["evidence"]["arms"].values()) >= 200
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="early", action="complete"),
        timeout=30,
        what="the completion at 100%",
    )


def holding_out(percent: float) -> Plan:
    """The by-hand plan, naming the holdout q3-2026 at ``percent``."""
    holdout = {"name": "q3-2026", "percent": percent}
    return Plan.model_validate({**manual_plan().model_dump(), "holdout": holdout})


async def test_a_holdout_travels_in_flag_states_and_keeps_one_percent(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    # Given ho-a rolling out with the holdout q3-2026 at 2%
    first = scenario.command("start", "ho-a", plan=holding_out(2))
    decided = await scenario.decided(first, flag="ho-a", what="ho-a started")
    assert decided["outcome"] == "applied"
    # Then its published flag state carries the holdout, signed with it
    state = await scenario.until(
        lambda: next((s for s in scenario.observed.flag_states if s["flag"] == "ho-a"), None),
        timeout=30,
        what="ho-a's flag state",
    )
    assert state["holdout"] == {"name": "q3-2026", "percent": 2.0}
    # When ho-b is started naming the same holdout at 1%, it is refused, saying why
    other = scenario.command("start", "ho-b", plan=holding_out(1))
    refused = await scenario.decided(other, flag="ho-b", what="ho-b decided")
    assert refused["outcome"] == "rejected"
    assert refused["reason"] == (
        "invalid plan: holdout: holdout q3-2026 is 2% on ho-a, not 1%: every flag naming it "
        "must give it the same percent"
    )
    assert await scenario.rollout("ho-b") is None
    # And ho-c naming it at 2% starts
    same = scenario.command("start", "ho-c", plan=holding_out(2))
    assert (await scenario.decided(same, flag="ho-c", what="ho-c decided"))["outcome"] == "applied"
