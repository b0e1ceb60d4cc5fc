"""No stage ends, and no rollout completes, while a gating guardrail is untested.

Through the real broker, Redis and daemon, with the default floors
(``min_metric_events`` 150): a stage whose guardrail has too few events in an
arm holds, whatever its minimum time and unit floor say; a 20x regression on
a thin trickle of new units is therefore tested, and rolled back, before it
reaches more users; and a stage that cannot gather its events before its
``max_duration`` ends inconclusive, paused, never advanced.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def twenty_times(_state: dict[str, Any], arm: Arm) -> float:
    return 0.40 if arm is Arm.TREATMENT else 0.02


def healthy(_state: dict[str, Any], _arm: Arm) -> float:
    return 0.02


def short_stages(*, max_seconds: int | None = None, units: int = 100) -> Plan:
    """25% (10 s) → 50% (10 s) → 100%, one error-rate guardrail, the default event floor."""
    longest = None if max_seconds is None else timedelta(seconds=max_seconds)
    return Plan(
        stages=[
            Stage(
                percent=25,
                min_duration=timedelta(seconds=10),
                min_units_per_arm=units,
                max_duration=longest,
            ),
            Stage(percent=50, min_duration=timedelta(seconds=10), min_units_per_arm=units),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


async def test_a_regression_on_thin_traffic_is_tested_and_rolled_back_never_advanced(
    scenario: Scenario,
) -> None:
    # Given about 20 new units a second, treatment failing 40% against 2% on control
    scenario.start_daemon()
    scenario.run_apps("thin", errors=twenty_times, rate=40, units=10_000_000)
    # When a rollout of short stages runs with the default event floor (150)
    await scenario.start("thin", short_stages())
    # Then the first stage holds until error_rate is tested, and rolls back on it
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag="thin", action="rollback"),
        timeout=150,
        what="the regression rolled back",
    )
    assert rollback["stage"] == 0, rollback["reason"]
    assert rollback["evidence"]["breach"] == "error_rate", rollback["reason"]
    tested = rollback["evidence"]["guardrails"]["error_rate"]
    assert isinstance(tested, dict), tested
    arms = rollback["evidence"]["arms"]
    assert min(arms["treatment"]["requests"], arms["control"]["requests"]) >= 150, arms
    # ...and no stage was ever advanced past, nor the rollout completed
    for action in ("advance", "complete", "promote"):
        assert scenario.observed.decision_where(flag="thin", action=action) is None, action


async def test_a_stage_that_cannot_gather_its_events_ends_inconclusive_and_pauses(
    scenario: Scenario,
) -> None:
    # Given a trickle of healthy traffic: about 2 requests a second in all
    scenario.start_daemon()
    scenario.run_apps("trickle", errors=healthy, rate=4, units=10_000_000)
    # When its first stage's unit floor is met long before error_rate's event floor
    await scenario.start("trickle", short_stages(max_seconds=20, units=2))
    # Then past max_duration the stage ends inconclusive: paused, with the stuck alert
    pause = await scenario.until(
        lambda: scenario.observed.decision_where(flag="trickle", action="pause:inconclusive"),
        timeout=90,
        what="the inconclusive stage paused",
    )
    assert pause["stage"] == 0, pause
    assert pause["outcome"] == "applied", pause
    assert "max_duration" in pause["reason"], pause["reason"]
    assert pause["evidence"]["policy"]["trigger"] == "inconclusive", pause["evidence"]
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="trickle", kind="stuck"),
        timeout=30,
        what="the stuck alert",
    )
    assert alert["details"]["max_duration_s"] == 20
    # ...and it never moved on
    rollout = await scenario.rollout("trickle")
    assert rollout is not None
    assert rollout.stage == 0
    for action in ("advance", "complete"):
        assert scenario.observed.decision_where(flag="trickle", action=action) is None, action
