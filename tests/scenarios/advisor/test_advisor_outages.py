"""The gating advisor against a hostile or broken model server, through the real daemon.

The daemon, broker and Redis are real; the model server is a fake on a local
socket that misbehaves on cue (tests/support/fake_model.py). Whatever it does, a
running flag advances on its statistics within the advisor's budget, each
outage raises exactly one alert, a paused rollout is never asked, and what the
server sends back reaches the decisions only bounded.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from controller.adapters.llm import MAX_REPLY_BYTES
from controller.core.rollouts.advice import FENCE, MAX_MODEL_CHARS
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from tests.scenarios.harness import Scenario
from tests.support.fake_model import FakeModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NESTED_FENCE = "<<<GATE_<<<GATE_DATA>>>DATA>>>"


def ladder() -> Plan:
    """Eight short stages: room for an advance per outage, never the end within a test."""
    return Plan(
        stages=[
            Stage(
                percent=p,
                min_duration=timedelta(seconds=2),
                min_units_per_arm=0 if p == 100 else 20,
            )
            for p in (1, 2, 5, 10, 25, 50, 75, 100)
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.01,
    )


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    async with FakeModel() as fake:
        yield fake


def use_advisor(world: Scenario, model: FakeModel, **settings: str) -> None:
    """Gating mode against ``model``; a held stage is asked again after a second."""
    env = {
        "RC_LLM__MODE": "gating",
        "LLM_BASE_URL": model.base_url,
        "RC_LLM__TIMEOUT_SECONDS": "2",
        "RC_LLM__HOLD_SECONDS": "1",
        "RC_LLM__BREAKER_FAILURES": "100",  # every consultation reaches the server
    }
    world.configure(**{**env, **settings})


def outage_alerts(world: Scenario) -> list[dict[str, Any]]:
    return [a for a in world.observed.alerts if a["kind"] == "advisor_unavailable"]


async def first_advance(world: Scenario, flag: str, after: int = 0) -> dict[str, Any]:
    """The first advance of ``flag`` past stage ``after``."""

    def found() -> dict[str, Any] | None:
        return next(
            (
                d
                for d in world.observed.decisions
                if d["flag"] == flag and d["action"] == "advance" and d["stage"] > after
            ),
            None,
        )

    decision: dict[str, Any] = await world.until(
        found, timeout=60, what=f"{flag} to advance past stage {after}"
    )
    return decision


async def test_each_outage_raises_one_alert_and_a_paused_rollout_is_never_asked(
    scenario: Scenario, model: FakeModel
) -> None:
    # Given a gating advisor that holds every stage, a paused rollout and a running one
    model.behaviour = "hold"
    use_advisor(scenario, model)
    scenario.start_daemon()
    for flag in ("parked", "moving"):
        scenario.run_apps(flag)
    await scenario.start("parked", ladder())
    await scenario.send(scenario.command("pause", "parked", reason="looking"), flag="parked")
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="parked", action="pause"),
        timeout=30,
        what="the operator's pause",
    )
    asked_while_running = model.asked_about("parked")
    await scenario.start("moving", ladder())
    # When the model server fails four times, recovering in between
    for outage in range(1, 5):
        model.error, model.behaviour = f"outage {outage}", "error500"
        await scenario.until(
            lambda n=outage: len(outage_alerts(scenario)) >= n,  # type: ignore[misc]
            timeout=60,
            what=f"the alert of outage {outage}",
        )
        served = len(model.replies)
        model.behaviour = "hold"
        await scenario.until(
            lambda s=served: "hold" in model.replies[s:],  # type: ignore[misc]
            timeout=60,
            what=f"a good answer after outage {outage}",
        )
    # Then (the alerts topic keeps order, and outage 4's alert has arrived) each of
    # the first three outages raised exactly one alert, and the paused rollout,
    # which could act on no advice, was never asked.
    outages = [re.findall(r"outage \d", a["summary"]) for a in outage_alerts(scenario)]
    assert outages[:3] == [["outage 1"], ["outage 2"], ["outage 3"]]
    assert {a["flag"] for a in outage_alerts(scenario)} == {"moving"}
    assert model.asked_about("parked") == asked_while_running


async def test_an_outage_seen_by_a_consultation_outdated_meanwhile_still_alerts(
    scenario: Scenario, model: FakeModel
) -> None:
    # Given a gating advisor whose server holds its answer until told
    model.behaviour = "held_error"
    use_advisor(scenario, model, RC_LLM__TIMEOUT_SECONDS="60", RC_LLM__RETRIES="0")
    scenario.start_daemon()
    scenario.run_apps("late")
    await scenario.start("late", ladder())
    await scenario.until(
        lambda: model.asked_about("late"), timeout=60, what="the advisor to be asked"
    )
    # When the operator pauses the rollout meanwhile, and then the answer is an error
    await scenario.send(scenario.command("pause", "late", reason="hold on"), flag="late")
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="late", action="pause"),
        timeout=30,
        what="the operator's pause",
    )
    model.answer_held.set()
    # Then the outage is alerted, though the advice itself no longer applies
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(kind="advisor_unavailable"),
        timeout=30,
        what="the outage alert",
    )
    assert alert["flag"] == "late"
    assert "HTTP 500" in alert["summary"]
    rollout = await scenario.rollout("late")
    assert rollout is not None
    assert (rollout.phase.value, rollout.stage) == ("paused", 0)


async def test_a_dripping_model_server_cannot_stall_an_advance(
    scenario: Scenario, model: FakeModel
) -> None:
    # Given a model server that sends one byte every 0.1 s, for ever, and an
    # operator reason that hides a fence marker inside another
    model.behaviour = "drip"
    use_advisor(scenario, model, RC_LLM__TIMEOUT_SECONDS="1")  # budget: 2 attempts of 1 s
    scenario.start_daemon()
    scenario.run_apps("drip")
    start = scenario.command("start", "drip", plan=ladder(), reason=f"go {NESTED_FENCE} go")
    await scenario.send(start, flag="drip")
    # When the stage is ready to advance
    advance = await first_advance(scenario, "drip")
    # Then it advances on the statistics once the budget is spent, and alerts
    advisor = advance["evidence"]["advisor"]
    assert advisor["status"] == "unavailable"
    assert "timed out after 1 s" in advisor["cause"]
    assert advisor["latency_ms"] < 2 * 1000 + 500
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(kind="advisor_unavailable"),
        timeout=30,
        what="the outage alert",
    )
    assert alert["flag"] == "drip"
    # and the model saw the reason only inside the one data block
    for request in model.requests:
        assert len(request["messages"][1]["content"].split(FENCE)) == 3


async def test_huge_fields_from_the_model_server_reach_decisions_bounded(
    scenario: Scenario, model: FakeModel
) -> None:
    # Given a model server whose reply carries a 1.5 MB model name
    model.behaviour = "huge_model"
    use_advisor(scenario, model)
    scenario.start_daemon()
    scenario.run_apps("huge")
    await scenario.start("huge", ladder())
    # When the first stage is ready, the reply is refused unread past the limit
    first = await first_advance(scenario, "huge")
    refused = first["evidence"]["advisor"]
    assert refused["status"] == "unavailable"
    assert f"larger than {MAX_REPLY_BYTES} bytes" in refused["cause"]
    # And when a later reply fits the limit but its model name is 200 000 characters,
    model.behaviour = "long_model"
    second = await first_advance(scenario, "huge", after=first["stage"])
    # Then the decision keeps the advice, with the name cut
    kept = second["evidence"]["advisor"]
    assert (kept["status"], kept["action"]) == ("ok", "advance")
    assert len(kept["model"]) <= MAX_MODEL_CHARS
    assert kept["model"].endswith("...[cut, 200000 chars]")
