"""A completed step whose late evidence regresses: an alert naming the flag and the stage,
and the pipeline holds its next step.

Dev completes; staging waits for its soak. Then events of dev's first stage arrive late
(an app's buffer flushed after an outage) and show a regression under the same tests.
The flag stays completed, a critical ``late_regression`` alert names it and the stage,
and the run holds: staging waits for an operator and does not start.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario
from tests.scenarios.pipelines.test_pipelines import PLAN, Release, key_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PIPELINE = {
    "name": "release",
    "plans": {"fast": PLAN},
    "plan": "fast",
    "steps": [{"environment": "dev"}, {"environment": "staging", "soak": "1h"}],
}
LATE_UNITS = 400
"""Units per arm whose events of dev's first stage come late."""


@pytest.mark.timeout(300)
async def test_a_completed_rollouts_late_regression_alerts_and_holds_the_next_step(
    scenario: Scenario,
) -> None:
    # Given a pipeline whose dev step completed, and staging waiting for its soak
    flag = "pipe-late"
    dev = key_in(flag, "dev")
    release = Release(scenario)
    scenario.start_daemon()
    scenario.run_apps(dev, rate=2000)
    first = await release.start(flag, PIPELINE)
    assert first["outcome"] == "applied", first
    await scenario.until(
        lambda: ("pipeline_step", "dev") in release.decided(flag),
        timeout=120,
        what="dev completed",
    )
    await scenario.stop_apps()
    stage_one = next(
        s for s in scenario.observed.flag_states if s["flag"] == dev and s["percent"] == 50
    )

    # When events of dev's first stage arrive late, its treatment failing 30% of requests
    await _send_late(scenario, dev, stage_one)

    # Then a critical alert names the flag and the stage whose evidence came late
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(kind="late_regression"),
        timeout=90,
        what="the late_regression alert",
    )
    assert alert["flag"] == dev, alert
    assert alert["severity"] == "critical", alert
    assert alert["details"]["stage"] == 0, alert
    assert "late evidence of stage 1/2" in alert["summary"], alert
    assert alert["details"]["late"]["flag_versions"] == [stage_one["version"]], alert
    # and the flag stays completed: an operator judges
    rollout = await scenario.rollout(dev)
    assert rollout is not None
    assert rollout.phase.value == "completed"
    # And the pipeline holds its next step: staging waits for an operator, not started
    hold = await scenario.until(
        lambda: ("pipeline_hold", "dev") in release.decided(flag) or None,
        timeout=60,
        what="the pipeline holding",
    )
    assert hold
    view = await release.status(flag)
    assert [e["status"] for e in view["environments"]] == ["completed", "pending"], view
    assert ("pipeline_start", "staging") not in release.decided(flag)
    waiting = orjson.dumps(view).decode()
    assert "an operator: dev completed, then late evidence" in waiting, view


async def _send_late(scenario: Scenario, flag: str, state: dict[str, Any]) -> None:
    """``LATE_UNITS`` units per arm of ``state``'s version, exposed and making a request."""
    producer = AIOKafkaProducer(bootstrap_servers=scenario.bootstrap, linger_ms=5)
    await producer.start()
    try:
        per_arm: dict[Arm, int] = {Arm.TREATMENT: 0, Arm.CONTROL: 0}
        i = 0
        while min(per_arm.values()) < LATE_UNITS:
            unit, i = f"late-{i}", i + 1
            arm = assign(flag, state["salt"], unit, state["percent"])
            if per_arm[arm] >= LATE_UNITS:
                continue
            failed = per_arm[arm] < LATE_UNITS * (0.3 if arm is Arm.TREATMENT else 0.02)
            per_arm[arm] += 1
            base = {
                "v": 1,
                "ts": int(time.time() * 1000),
                "flag": flag,
                "unit": unit,
                "arm": arm.value,
                "flag_version": state["version"],
            }
            for body in (
                {"type": "exposure", "id": f"lx{uuid.uuid4().hex}"},
                {"type": "request", "id": f"lr{uuid.uuid4().hex}", "error": failed},
            ):
                value = orjson.dumps({**base, **body})
                await producer.send(scenario.topics["events"], key=unit.encode(), value=value)
        await producer.flush()
    finally:
        await producer.stop()
