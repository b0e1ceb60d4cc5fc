"""Release windows through the real broker, Redis and daemon: a freeze holds forward moves,
never a rollback; a start or a pipeline whose windows never open again is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import TypeAdapter

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.rollouts.windows import Windows
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario, manual_plan
from tests.support.backing.services import free_port

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


OVER = [
    {"kind": "allow", "name": "five-days-of-2024", "rule": "FREQ=DAILY;COUNT=5", "duration": "1h"},
    {"kind": "allow", "name": "past-until", "rule": "FREQ=DAILY;UNTIL=20250101", "duration": "1h"},
    {"kind": "allow", "name": "past-one-off", "from": "2025-03-01T09:00:00", "to": "2025-03-02"},
]


async def test_a_start_under_team_windows_that_never_open_again_is_refused(
    scenario: Scenario, tmp_path: Path
) -> None:
    # Given a team windows file whose every opening lies in the past
    windows = tmp_path / "windows.yaml"
    windows.write_text(yaml.safe_dump({"windows": OVER}), encoding="utf-8")
    scenario.configure(RC_ENGINE__WINDOWS_FILE=str(windows))
    scenario.start_daemon()
    # When a plan naming no windows of its own is started
    command = scenario.command("start", "team-shut", plan=manual_plan())
    decision = await scenario.decided(command, flag="team-shut", what="the start's decision")
    # Then it is refused with the reason, and nothing waits forever
    assert decision["outcome"] == "rejected"
    assert decision["reason"].startswith(
        "the team's windows (engine.windows_file): no window opens from"
    )
    assert await scenario.rollout("team-shut") is None
    # ...while a plan that names its own (none) starts
    opted_out = manual_plan().model_copy(update={"windows": ()})
    command = scenario.command("start", "team-shut", plan=opted_out)
    started = await scenario.decided(command, flag="team-shut", what="the second start")
    assert started["outcome"] == "applied"


@pytest.mark.parametrize("window", OVER, ids=[w["name"] for w in OVER])
async def test_a_pipeline_whose_step_windows_never_open_again_is_refused(
    scenario: Scenario, window: dict[str, Any]
) -> None:
    # Given a controller serving dev and production
    scenario.configure(
        RC_ENGINE__ENVIRONMENTS='{"names": ["dev", "production"], "default": "production"}'
    )
    scenario.start_daemon()
    # When a pipeline's production step may start only in a window that is over
    pipeline = {
        "name": "release",
        "plan": "manual",
        "plans": {"manual": manual_plan().model_dump(mode="json")},
        "steps": [{"environment": "dev"}, {"environment": "production", "windows": [window]}],
    }
    command = scenario.pipeline_command("pipe-shut", pipeline)
    decision = await scenario.decided(command, flag="pipe-shut", what="the pipeline's decision")
    # Then the pipeline is refused, naming the step's window, and dev never starts
    assert decision["outcome"] == "rejected"
    assert decision["reason"].startswith("invalid pipeline: steps.1.windows[0].")
    assert "it never opens again" in decision["reason"]
    assert await scenario.rollout("pipe-shut@dev") is None
