"""Prerequisites through the real broker, Redis and daemon: starts that would break them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from tests.scenarios.harness import Scenario, manual_plan

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def requiring(*parents: str) -> Plan:
    """The by-hand plan, requiring each of ``parents`` to serve treatment."""
    needs = [{"flag": parent, "variants": ["treatment"]} for parent in parents]
    return Plan.model_validate({**manual_plan().model_dump(), "requires": needs})


async def decided(scenario: Scenario, action: str, flag: str, **options: Any) -> dict[str, Any]:
    command = scenario.command(action, flag, **options)
    return await scenario.decided(command, flag=flag, what=f"{action} {flag} decided")


async def test_starts_that_would_close_a_cycle_or_name_an_unknown_flag_are_refused(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    # Given pq-a rolling out, and pq-b requiring it
    assert (await decided(scenario, "start", "pq-a", plan=manual_plan()))["outcome"] == "applied"
    child = await decided(scenario, "start", "pq-b", plan=requiring("pq-a"))
    assert child["outcome"] == "applied"
    # When pq-a is stopped and started again requiring pq-b, signed, straight on the topic
    assert (await decided(scenario, "abort", "pq-a"))["outcome"] == "applied"
    cycle = await decided(scenario, "start", "pq-a", plan=requiring("pq-b"))
    # Then the start is refused, naming the cycle, and pq-a stays stopped
    assert cycle["outcome"] == "rejected"
    assert (
        cycle["reason"] == "invalid plan: requires: prerequisites form a cycle: pq-a → pq-b → pq-a"
    )
    rollout = await scenario.rollout("pq-a")
    assert rollout is not None
    assert not rollout.phase.active
    # And a start requiring a flag nobody rolls out is refused too, saying which
    unknown = await decided(scenario, "start", "pq-c", plan=requiring("pq-a", "pq-ghost"))
    assert unknown["outcome"] == "rejected"
    assert "pq-c requires pq-ghost, an unknown flag" in unknown["reason"]
    assert await scenario.rollout("pq-c") is None


def quick(*parents: str) -> Plan:
    """10% then 100%, nothing to wait for but the gate itself, requiring ``parents``."""
    stages = [
        Stage(percent=10, min_duration=timedelta(0), min_units_per_arm=0),
        Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
    ]
    needs = [{"flag": parent, "variants": ["treatment"]} for parent in parents]
    return Plan.model_validate({"stages": stages, "guardrails": [], "requires": needs})


async def test_a_child_holds_while_its_parent_is_not_served_and_goes_on_once_it_is(
    scenario: Scenario,
) -> None:
    scenario.start_daemon()
    # Given a parent at 1%, and a child requiring its treatment whose gate would advance
    assert (await decided(scenario, "start", "ph-a", plan=manual_plan()))["outcome"] == "applied"
    assert (await decided(scenario, "start", "ph-b", plan=quick("ph-a")))["outcome"] == "applied"
    scenario.run_apps("ph-b", rate=300, units=2000)  # traffic enough for its gate to advance
    # Then the child's advance waits, with one wait decision naming the parent
    wait = await scenario.until(
        lambda: scenario.observed.decision_where(flag="ph-b", action="wait"),
        timeout=60,
        what="the child's wait on its parent",
    )
    assert wait["reason"] == (
        "prerequisite: ph-a serves treatment to 1% of units, not only treatment"
    ), wait["reason"]
    assert wait["stage"] == 0
    held = await scenario.rollout("ph-b")
    assert held is not None
    assert (held.stage, held.window_wait) == (0, wait["reason"])
    # When the parent is promoted to the end (treatment for everyone)
    promoted = await decided(scenario, "promote", "ph-a", to_end=True)
    assert promoted["outcome"] == "applied", promoted["reason"]
    # Then the child goes on: it advances past its first stage
    moved = await scenario.until(
        lambda: scenario.observed.decision_where(flag="ph-b", action="advance"),
        timeout=60,
        what="the child's advance once its parent serves treatment",
    )
    assert moved["stage"] == 1
    assert [d["action"] for d in scenario.observed.decisions if d["flag"] == "ph-b"].count(
        "wait"
    ) == 1, "one wait decision for the whole wait"
