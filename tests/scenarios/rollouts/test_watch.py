"""The watch after 100% and the stale-flag reminder, through the real broker, Redis and daemon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Watch
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario, fast_plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def watched_plan(duration: timedelta) -> Plan:
    """The fast ladder, then a watch with a 1% control holdback."""
    return fast_plan().model_copy(
        update={"watch": Watch(duration=duration, holdback_percent=1, on_regression="rollback")}
    )


def flag_states(world: Scenario, flag: str) -> list[dict[str, Any]]:
    return [s for s in world.observed.flag_states if s["flag"] == flag]


async def test_a_clean_watch_completes_at_100_and_the_flag_goes_stale(scenario: Scenario) -> None:
    # Given a daemon that calls a flag stale two seconds after it completed
    scenario.configure(RC_ENGINE__STALE_AFTER_DAYS=str(2 / 86400))
    scenario.start_daemon()
    scenario.run_apps("checkout")
    # When a healthy rollout with a 20-second watch runs (its 1% holdback needs
    # the guardrail's 150 requests per arm before it is tested)
    await scenario.start("checkout", watched_plan(timedelta(seconds=20)))
    # Then it enters the watch at 99% (1% held back on control) ...
    watch = await scenario.until(
        lambda: scenario.observed.decision_where(flag="checkout", action="watch"),
        timeout=120,
        what="the watch to start",
    )
    assert (watch["stage"], watch["phase_after"]) == (4, "running")
    assert "holdback" in watch["evidence"]["watch"]["watched"]
    # ... and completes at 100% when the watch ends clean, having seen control units
    done = await scenario.until(
        lambda: scenario.observed.decision_where(flag="checkout", action="complete"),
        timeout=60,
        what="the watch to end",
    )
    assert done["reason"] == "the watch ended clean"
    assert done["evidence"]["arms"]["control"]["units"] > 0
    assert done["evidence"]["guardrails"]["error_rate"] != "insufficient data"
    assert done["evidence"]["guardrails"]["error_rate"]["regressed"] is False
    await scenario.until(
        lambda: flag_states(scenario, "checkout")[-1]["status"] == "completed",
        timeout=10,
        what="the completed flag state",
    )
    assert [s["percent"] for s in flag_states(scenario, "checkout")][-3:] == [100, 99, 100]
    # And the completed flag raises one reminder to remove it from the code
    stale = await scenario.until(
        lambda: scenario.observed.alert_where(flag="checkout", kind="stale_flag"),
        timeout=30,
        what="the stale-flag reminder",
    )
    assert stale["severity"] == "info"
    # (once: a later flag's reminder shows the sweeps went on since)
    await scenario.gates_ran("marker")
    await scenario.until(
        lambda: scenario.observed.alert_where(flag="marker", kind="stale_flag"),
        timeout=90,
        what="the marker's stale-flag reminder",
    )
    reminders = [a for a in scenario.observed.alerts if a["kind"] == "stale_flag"]
    assert [a["flag"] for a in reminders].count("checkout") == 1
    assert {a["kind"] for a in scenario.observed.alerts} == {"stale_flag"}


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_a_regression_during_the_watch_is_rolled_back(scenario: Scenario) -> None:
    # Given apps whose treatment starts failing once the flag is in its watch (99%)
    def errors(state: dict[str, Any], arm: Arm) -> float:
        return 0.30 if arm is Arm.TREATMENT and state["percent"] == 99 else 0.02

    scenario.start_daemon()
    scenario.run_apps("search", errors=errors)
    # When a rollout with a long watch runs
    await scenario.start("search", watched_plan(timedelta(minutes=30)))
    # Then the watch catches the regression against the holdback and rolls back
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag="search", action="rollback"),
        timeout=180,
        what="the rollback during the watch",
    )
    assert scenario.observed.decision_where(flag="search", action="watch") is not None
    assert rollback["stage"] == 4
    assert rollback["evidence"]["breach"] == "error_rate"
    assert rollback["evidence"]["guardrails"]["error_rate"]["lower"] > 0
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="search", kind="rollback"),
        timeout=10,
        what="the rollback alert",
    )
    assert "at stage 5/5 (100%), in its watch (99% served):" in alert["summary"]
    await scenario.until(
        lambda: flag_states(scenario, "search")[-1]["status"] == "rolled_back",
        timeout=10,
        what="the rolled-back flag state",
    )
    assert flag_states(scenario, "search")[-1]["percent"] == 0
    assert scenario.observed.decision_where(flag="search", action="complete") is None


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_an_alerting_watch_alerts_once_and_keeps_its_holdback(scenario: Scenario) -> None:
    # Given apps whose treatment starts failing in the watch, and a plan that alerts
    def errors(state: dict[str, Any], arm: Arm) -> float:
        return 0.30 if arm is Arm.TREATMENT and state["percent"] == 99 else 0.02

    plan = watched_plan(timedelta(seconds=20))  # the 1% holdback reaches 150 requests
    alerting = plan.model_copy(
        update={"watch": plan.watch.model_copy(update={"on_regression": "alert"})}  # type: ignore[union-attr]
    )
    scenario.start_daemon()
    scenario.run_apps("search", errors=errors)
    # When the rollout runs into its watch
    await scenario.start("search", alerting)
    # Then the regression raises one critical alert, and nothing rolls back
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="search", kind="guardrail"),
        timeout=180,
        what="the watch's regression alert",
    )
    assert alert["severity"] == "critical"
    assert alert["details"]["watch"] is True
    assert alert["details"]["breach"] == "error_rate"
    # The decision is on another topic than the alert: it may be observed a moment later.
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="search", action="watch_regression"),
        timeout=30,
        what="the watch's regression decision",
    )
    watching = await scenario.rollout("search")
    assert watching is not None
    assert watching.watch_until is not None
    ends = watching.watch_until
    await scenario.until(lambda: datetime.now(UTC) > ends, timeout=30, what="the watch's end")
    await scenario.gates_ran("marker")  # gates ran after the watch's end: it still holds
    rollout = await scenario.rollout("search")
    assert rollout is not None
    assert (rollout.phase.value, rollout.percent) == ("running", 99)
    assert [a["kind"] for a in scenario.observed.alerts if a["flag"] == "search"] == ["guardrail"]
