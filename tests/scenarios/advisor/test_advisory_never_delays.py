"""The advisory advisor never delays a rollout: the statistics decide, the opinion follows.

The daemon, broker and Redis are real; the model server is the fake of
tests/support/fake_model.py, taking 60 s for each answer. The same plan runs first with
the advisor off, then in advisory mode, and the time from the start to the first
advance is compared; the opinion is then recorded against that advance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from tests.scenarios.harness import Scenario
from tests.support.fake_model import FakeModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLACK_SECONDS = 6.0
"""Two daemons on a busy machine: gate passes and event batches land a few seconds apart."""


def short_stages() -> Plan:
    return Plan(
        stages=[
            Stage(
                percent=p,
                min_duration=timedelta(seconds=2),
                min_units_per_arm=0 if p == 100 else 20,
            )
            for p in (5, 25, 50, 100)
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.01,
    )


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    async with FakeModel() as fake:
        yield fake


def seconds(decision: dict[str, Any]) -> float:
    stamp = decision["ts"]
    if isinstance(stamp, int | float):
        return float(stamp) / 1000
    return datetime.fromisoformat(str(stamp)).timestamp()


async def start_to_first_advance(world: Scenario, flag: str) -> tuple[float, dict[str, Any]]:
    """Seconds from the start decision of ``flag`` to its first advance, and that advance."""
    world.run_apps(flag)
    await world.start(flag, short_stages())
    advance: dict[str, Any] = await world.until(
        lambda: world.observed.decision_where(flag=flag, action="advance"),
        timeout=60,
        what=f"{flag} to advance",
    )
    started = world.observed.decision_where(flag=flag, action="start")
    assert started is not None
    return seconds(advance) - seconds(started), advance


async def test_an_advisory_rollout_advances_as_fast_as_without_the_advisor(
    scenario: Scenario, model: FakeModel
) -> None:
    # Given the advisor off: the time the statistics take to advance a stage
    scenario.configure(RC_LLM__MODE="off")
    scenario.start_daemon()
    baseline, _ = await start_to_first_advance(scenario, "unadvised")
    await scenario.stop_apps()
    scenario.daemon.terminate()
    # And then the advisor in advisory mode, on a model that takes 60 s to answer
    model.behaviour = "slow"
    scenario.configure(
        RC_LLM__MODE="advisory", LLM_BASE_URL=model.base_url, RC_LLM__TIMEOUT_SECONDS="90"
    )
    scenario.start_daemon()
    # When the same plan runs
    advised, advance = await start_to_first_advance(scenario, "advised")
    # Then the advance took no longer than without the advisor, and did not wait for it
    assert advised < baseline + SLACK_SECONDS, (advised, baseline)
    assert model.asked_about("advised") >= 1
    assert "advisor" not in advance["evidence"]
    assert not scenario.observed.decision_where(flag="advised", kind="advisor")
    # When the model answers at last
    model.answer_held.set()
    opinion: dict[str, Any] = await scenario.until(
        lambda: scenario.observed.decision_where(flag="advised", action="opinion"),
        timeout=30,
        what="the opinion to be recorded",
    )
    # Then it is recorded against that advance, and nothing alerted or held
    assert (opinion["kind"], opinion["outcome"]) == ("advisor", "recorded")
    assert opinion["evidence"]["advisor"]["status"] == "ok"
    assert opinion["evidence"]["advisor"]["action"] == "advance"
    about = opinion["evidence"]["opinion_on"]
    assert about["rollout_id"] == advance["rollout_id"]
    assert opinion["evidence"]["at_stage"] == advance["evidence"]["at_stage"]
    assert about["stage"] == advance["evidence"]["at_stage"]["index"]
    assert not scenario.observed.alert_where(kind="advisor_unavailable")
