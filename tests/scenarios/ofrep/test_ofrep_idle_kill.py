"""A kill after half a minute in which no app asked reaches the very first OFREP answer.

The daemon on the real broker and Redis; the operator's signed kill on the
commands topic; OpenFeature's published Python OFREP provider as the app.
The app is served treatment, nobody asks for 30 s, the flag is killed, and
the first evaluation made once the decision is published answers control.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.wire.bucketing import assign
from tests.integration.http.test_http import wait_status
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "idle-kill"
IDLE_SECONDS = 30.0
"""How long no app asks: far past the snapshot's max age (a second)."""
HALF = Plan(
    name="half",
    stages=[
        Stage(percent=50, min_duration=timedelta(minutes=10), min_units_per_arm=0),
        Stage(percent=100, min_units_per_arm=0),
    ],
    guardrails=[Guardrail(metric="error_rate")],
)


async def treated_unit(base: str) -> str:
    """A unit the flag's first stage serves treatment, from the salt ``GET /flags`` shows."""
    async with httpx.AsyncClient(timeout=30) as client:
        states = (await client.get(f"{base}/flags")).json()
    [state] = [s for s in states if s["flag"] == FLAG]
    units = (f"user-{i}" for i in range(1000))
    return next(u for u in units if assign(FLAG, state["salt"], u, 50.0).value == "treatment")


async def test_the_first_answer_after_30_s_idle_is_the_kill(scenario: Scenario) -> None:
    # Given the daemon serving OFREP and a flag rolling out at 50%
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"{base}/healthz", 200)
    started = await scenario.decided(
        scenario.command("start", FLAG, plan=HALF), flag=FLAG, what="the rollout started"
    )
    assert started["outcome"] == "applied", started["reason"]
    unit = await treated_unit(base)
    api.set_provider(OFREPProvider(base, timeout=30), "idle-kill")
    client = api.get_client("idle-kill")

    async def resolve() -> FlagEvaluationDetails[bool]:
        context = EvaluationContext(unit)
        return await asyncio.to_thread(client.get_boolean_details, FLAG, False, context)

    async def treated() -> bool:
        got = await resolve()
        assert got.variant == "treatment", (got.variant, got.error_code, got.error_message)
        return True

    try:
        # ...and an app served treatment through OpenFeature's provider
        await eventually(treated, timeout=30, what="OFREP to serve the unit treatment")
        # When no app asks for 30 s, and the operator kills the flag
        await asyncio.sleep(IDLE_SECONDS)
        killed = await scenario.decided(
            scenario.command("kill", FLAG, reason="errors"), flag=FLAG, what="the kill"
        )
        assert killed["outcome"] == "applied", killed["reason"]
        # Then the first evaluation after the decision is published serves control
        first = await resolve()
    finally:
        api.clear_providers()
    assert (first.value, first.variant, first.reason, first.error_code) == (
        False,
        "control",
        "DISABLED",
        None,
    )
