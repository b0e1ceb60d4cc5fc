"""A stage with no guardrails and no unit floor on the real daemon, broker and Redis: with
events it completes on its minimum time; with none at all it holds, then pauses
``no_traffic`` with an alert, because a stage nobody reports on cannot be told healthy."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.core.rollouts import PauseReason, Phase
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from tests.scenarios.harness import Scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The shape of the example pipeline's dev override: everyone, a minimum time, nothing else
ON_TIME = Plan(
    name="on-time",
    stages=[Stage(percent=100, min_duration=timedelta(seconds=2), min_units_per_arm=0)],
    guardrails=[],
    no_traffic_grace=timedelta(seconds=4),
)


async def test_a_stage_without_guardrails_completes_on_time_only_once_it_sees_events(
    scenario: Scenario,
) -> None:
    # Given two rollouts of a plan with no guardrails and no unit floor, one flag served
    # by apps that report, the other by nobody
    scenario.start_daemon()
    scenario.run_apps("reported", rate=200, units=200)
    await scenario.start("reported", ON_TIME)
    await scenario.start("unreported", ON_TIME)
    # Then the reported one completes on its minimum time
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="reported", action="complete"),
        timeout=120,
        what="the reported flag's rollout to complete",
    )
    # ...and the unreported one pauses no_traffic once its grace has passed, with an alert
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="unreported", kind="no_traffic"),
        timeout=120,
        what="the no_traffic alert",
    )
    assert alert["details"]["policy"]["trigger"] == "no_traffic"
    rollout = await scenario.rollout("unreported")
    assert rollout is not None
    assert (rollout.phase, rollout.pause_reason) == (Phase.PAUSED, PauseReason.NO_TRAFFIC)
    assert scenario.observed.decision_where(flag="unreported", action="complete") is None
