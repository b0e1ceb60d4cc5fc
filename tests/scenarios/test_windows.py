"""Release windows through the real broker, Redis and daemon (#28): a freeze holds forward
moves, never a rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.windows import Windows
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario
from tests.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def frozen_plan(now: datetime) -> Plan:
    """A fast plan inside a freeze that began an hour ago and ends in a day."""
    freeze = {
        "kind": "deny",
        "name": "freeze",
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(days=1)).isoformat(),
    }
    return Plan(
        name="frozen",
        stages=[
            Stage(percent=20, min_duration=timedelta(seconds=2), min_units_per_arm=20),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.01,
        windows=TypeAdapter(Windows).validate_python([freeze]),
    )


async def test_a_freeze_holds_the_advance_but_not_the_rollback(scenario: Scenario) -> None:
    # Given apps that are healthy until told otherwise
    regressed = {"now": False}

    def errors(_state: dict[str, Any], arm: Arm) -> float:
        return 0.40 if regressed["now"] and arm is Arm.TREATMENT else 0.02

    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    scenario.run_apps("frozen", errors=errors)
    # When a rollout starts inside a freeze
    now = datetime.now(UTC)
    await scenario.start("frozen", frozen_plan(now))
    # Then the ready stage waits, saying for what
    wait = await scenario.until(
        lambda: scenario.observed.decision_where(flag="frozen", action="wait"),
        timeout=120,
        what="the stage to wait for the window",
    )
    assert wait["reason"].startswith("ready, waiting for the window that opens")
    assert "inside deny window freeze until" in wait["reason"]
    opens = datetime.fromisoformat(wait["evidence"]["window"]["opens_at"])
    assert abs(opens - (now + timedelta(days=1))) < timedelta(seconds=1)
    rollout = await scenario.rollout("frozen")
    assert rollout is not None
    assert rollout.stage == 0
    assert rollout.window_wait == wait["reason"]
    # ...and the status says why it stands still and when it may next move
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        served = (await http.get("/rollouts/frozen")).json()
    assert served["next_move"]["why"].startswith("ready, waiting for the window that opens")
    assert datetime.fromisoformat(served["next_move"]["at"]) == opens
    # ...a person's promote is refused with the same reason
    promote = scenario.command("promote", "frozen")
    await scenario.send(promote, flag="frozen")
    refused = await scenario.until(
        lambda: scenario.observed.decision_where(flag="frozen", command_id=promote["id"]),
        timeout=60,
        what="the promote to be refused",
    )
    assert refused["outcome"] == "rejected"
    assert refused["reason"].startswith("inside deny window freeze until")
    # When the treatment regresses during the freeze
    regressed["now"] = True
    # Then it is rolled back as usual
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag="frozen", action="rollback"),
        timeout=120,
        what="the rollback during the freeze",
    )
    assert rollback["evidence"]["breach"] == "error_rate"
    actions = [d["action"] for d in scenario.observed.decisions if d["flag"] == "frozen"]
    assert actions == ["start", "wait", "promote", "rollback"]
