"""Scheduled starts and time-boxed flags through the real broker, Redis and daemons.

The daemon's clock is the wall clock, so the times are a few seconds ahead and
the sweep (which ticks every owned flag) runs every second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.core.rollouts.plan_parts import TimeBox
from controller.core.rollouts.rollout import Phase
from tests.scenarios.harness import Scenario, fast_plan
from tests.support.backing.services import free_port
from tests.support.controller_process import ControllerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def decisions(world: Scenario, flag: str, action: str) -> list[dict[str, object]]:
    return [d for d in world.observed.decisions if d["flag"] == flag and d["action"] == action]


async def test_a_scheduled_start_fires_once_across_a_restart_and_a_cancelled_one_never(
    scenario: Scenario,
) -> None:
    world = scenario
    world.start_daemon()
    # Given two starts scheduled a few seconds ahead
    at = datetime.now(UTC) + timedelta(seconds=8)
    for flag in ("later", "cancelled"):
        command = world.command("start", flag, plan=fast_plan(), at=at)
        await world.send(command, flag=flag)
        await world.until(
            lambda f=flag: world.observed.decision_where(flag=f, action="schedule"),  # type: ignore[misc]
            timeout=60,
            what=f"{flag} scheduled",
        )
    # When one is cancelled, and the daemon restarts before the time comes
    await world.send(world.command("abort", "cancelled"), flag="cancelled")
    cancel = await world.until(
        lambda: world.observed.decision_where(flag="cancelled", action="abort"),
        timeout=60,
        what="the cancel",
    )
    assert cancel["outcome"] == "applied"
    assert datetime.now(UTC) < at, "the restart must come before the scheduled time"
    world.daemon.terminate()
    world.start_daemon()
    # Then the scheduled start fires at its time, naming its schedule
    fired = await world.until(
        lambda: world.observed.decision_where(flag="later", action="start"),
        timeout=60,
        what="the scheduled start",
    )
    assert fired["evidence"]["schedule"]["at"] == at.isoformat()
    # ...and once a later sweep has gone by, it fired once and the cancelled one never
    await world.gates_ran("marker")
    assert len(decisions(world, "later", "start")) == 1
    assert decisions(world, "cancelled", "start") == []
    cancelled = await world.rollout("cancelled")
    assert cancelled is not None
    assert cancelled.phase is Phase.ABORTED
    started = await world.rollout("later")
    assert started is not None
    assert started.phase is Phase.RUNNING
    assert started.started_at >= at
    assert "Traceback" not in world.daemon.log_text()


async def test_a_time_box_turns_the_flag_off_once_with_two_instances(
    scenario: Scenario, tmp_path: Path
) -> None:
    world = scenario
    # Given two daemons sharing the work
    daemons = []
    for i in range(2):
        env = {**world.daemon_env(), "RC_HTTP__PORT": str(free_port())}
        daemon = ControllerProcess(env=env, log_path=tmp_path / f"d{i}.log").start()
        daemon.wait_for_log("commands_partitions_assigned", timeout=60)
        daemons.append(daemon)
    try:
        # When a flag starts with a time box that ends a few seconds later
        ends = datetime.now(UTC) + timedelta(seconds=8)
        boxed = fast_plan().model_copy(update={"time_box": TimeBox(ends_at=ends)})
        await world.start("boxed", boxed)
        await world.until(
            lambda: world.observed.decision_where(flag="boxed", action="start"),
            timeout=60,
            what="the time-boxed start",
        )
        # Then it turns off by itself at the end, with the decision naming the time box
        end = await world.until(
            lambda: world.observed.decision_where(flag="boxed", action="time_box_end"),
            timeout=60,
            what="the end of the time box",
        )
        assert end["phase_after"] == "aborted"
        assert end["evidence"]["time_box"]["ends_at"] == ends.isoformat()
        # ...exactly once, after more sweeps of both instances
        await world.gates_ran("marker")
        assert len(decisions(world, "boxed", "time_box_end")) == 1
        states = [s for s in world.observed.flag_states if s["flag"] == "boxed"]
        assert states[-1]["percent"] == 0
        assert states[-1]["status"] == "inactive"
        for daemon in daemons:
            assert "Traceback" not in daemon.log_text()
    finally:
        for daemon in daemons:
            daemon.kill()
