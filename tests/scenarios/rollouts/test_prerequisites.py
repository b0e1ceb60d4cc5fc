"""Prerequisites through the real broker, Redis and daemon: starts that would break them."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.rollouts.plan import Plan
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
