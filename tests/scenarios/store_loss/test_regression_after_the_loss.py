"""A regression served after Redis lost its data is rolled back on the rebuilt stage's
evidence alone, its effect measured right.

The daemon runs on a Redis of its own with no persistence. The rollout is at its third
stage (25%); Redis is killed and started again, empty, and the flag is rebuilt at that
stage with no command typed. Apps then serve the rebuilt split: 2,400 units of three
requests each, treatment failing 30% of its requests and control 2%. The gate rolls the
rollout back at its third stage, and the decision's evidence reports treatment's error
rate above control's by the 28 points sent, within a fifth of them, counted from the
rebuilt split's versions alone.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.rollout import Rollout
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario, manual_plan
from tests.scenarios.store_loss.kit import (
    FLAG,
    App,
    World,
    at_third_stage,
    rebuilt_at_third_stage,
    served_at,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATES = {Arm.TREATMENT: 0.30, Arm.CONTROL: 0.02}
EFFECT = RATES[Arm.TREATMENT] - RATES[Arm.CONTROL]
UNITS, REQUESTS = 2400, 3
MIN_EVENTS = 1200
"""Requests in each arm before the error rate is tested: at 1,200 treatment requests, one
standard error of the difference is 0.013, a fifth of the effect 0.056."""


def gated_by_hand() -> Plan:
    """The harness's stages only commands move on, the error rate tested once each arm has
    :data:`MIN_EVENTS` requests."""
    return manual_plan().model_copy(update={"min_metric_events": MIN_EVENTS})


async def _regressed_traffic(world: Scenario, rollout: Rollout) -> dict[Arm, tuple[int, int]]:
    """Each unit's exposure and requests, as apps served ``rollout``'s split send them; each
    arm's failures spread evenly over its requests at its rate. Each arm's (failed, sent)."""
    sent = {arm: [0, 0] for arm in Arm}
    for n in range(UNITS):
        unit = f"after-{n}"
        arm = assign(FLAG, rollout.salt, unit, rollout.percent)
        base = {"v": 1, "flag": FLAG, "unit": unit, "arm": arm.value}
        base["flag_version"] = rollout.flag_version
        events: list[dict[str, Any]] = [{"type": "exposure", "id": f"{unit}-x"}]
        for r in range(REQUESTS):
            failed, k = sent[arm]
            error = int((k + 1) * RATES[arm]) > failed
            sent[arm] = [failed + error, k + 1]
            events.append({"type": "request", "id": f"{unit}-r{r}", "error": error})
            events[-1]["latency_ms"] = 20.0
        for event in events:
            body = base | event | {"ts": int(time.time() * 1000)}
            await world.send_event(orjson.dumps(body), unit=unit)
    await world.flush()
    return {arm: (failed, total) for arm, (failed, total) in sent.items()}


async def test_a_regression_after_the_loss_is_rolled_back_with_its_effect(
    world: World,
) -> None:
    scenario = world.scenario
    # Given a rollout at its third stage (25%), rebuilt after Redis came back empty
    before = await at_third_stage(scenario, gated_by_hand())
    app = App(world.url)
    await served_at(scenario, app, before)
    world.redis.kill()
    world.redis.start()
    rebuilt = await rebuilt_at_third_stage(scenario, app, before)
    app.stopping.set()
    # When apps serve its split and treatment fails 30% of requests, control 2%
    sent = await _regressed_traffic(scenario, rebuilt)
    (t_failed, t_sent), (c_failed, c_sent) = sent[Arm.TREATMENT], sent[Arm.CONTROL]
    assert min(t_sent, c_sent) >= 4 * MIN_EVENTS // 3, sent
    assert abs(t_failed / t_sent - c_failed / c_sent - EFFECT) < 0.005, sent
    # Then the rollout is rolled back at its third stage, on the error rate
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag=FLAG, action="rollback"),
        timeout=120,
        what="the rollback",
    )
    assert (rollback["rollout_id"], rollback["stage"]) == (before.rollout_id, 2), rollback
    evidence = rollback["evidence"]
    assert evidence["breach"] == "error_rate", evidence
    # ...on the rebuilt split's evidence alone, its effect within a fifth of the one sent
    assert min(evidence["flag_versions"]) > before.flag_version, evidence
    test = evidence["guardrails"]["error_rate"]
    assert test["regressed"] is True, test
    assert abs(test["delta"] - EFFECT) <= 0.2 * EFFECT, (test, sent)
    assert evidence["arms"]["treatment"]["requests"] >= MIN_EVENTS, evidence["arms"]
    last = await scenario.until(
        lambda: _last_state(scenario, "rolled_back"), timeout=30, what="the rolled back state"
    )
    assert last["percent"] == 0, last


def _last_state(world: Scenario, status: str) -> dict[str, Any] | None:
    state = world.state(FLAG)
    return state if state is not None and state["status"] == status else None
