"""Per-guardrail gauges through the real daemon: on /metrics while active, gone once ended."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scenarios.harness import Scenario, fast_plan
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Series = dict[tuple[str, str], float]
LOWER, UPPER = ("rollout_guardrail_lower", "error_rate"), ("rollout_guardrail_upper", "error_rate")


def cart_series(text: str) -> Series:
    """The flag ``cart``'s guardrail and SRM samples, by name and metric label."""
    return {
        (s.name, s.labels.get("metric", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("rollout_guardrail_", "rollout_srm_"))
        and s.labels.get("flag") == "cart"
    }


async def polled(check: Callable[[], Awaitable[Series | None]], *, what: str) -> Series:
    """Poll ``check`` until it returns series (60 s at most)."""

    async def found() -> tuple[Series]:
        series = await check()
        assert series is not None, "no series yet"
        return (series,)  # truthy even when the series found is empty (all removed)

    return (await eventually(found, timeout=60, what=what))[0]


async def test_guardrail_gauges_move_while_active_and_go_when_the_rollout_ends(
    scenario: Scenario,
) -> None:
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port))
    scenario.start_daemon()
    # The guardrail is tested once *each* arm has min_metric_events (150) requests:
    # at 1% that is the treatment arm's 150, about 15 s of 1,000 requests a second.
    scenario.run_apps("cart", rate=1000)
    await scenario.start("cart", fast_plan(hold_stage=0))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        async def scrape() -> Series | None:
            try:
                return cart_series((await http.get("/metrics")).text)
            except httpx.TransportError:  # the daemon is still starting
                return None

        async def tested() -> Series | None:
            found = await scrape()
            return found if found and LOWER in found else None

        # Given a running rollout with traffic, its guardrail shows on /metrics
        first = await polled(tested, what="the error_rate gauges")
        assert first[LOWER] <= first[("rollout_guardrail_delta", "error_rate")] <= first[UPPER]
        assert 0 <= first[("rollout_guardrail_p_value", "error_rate")] <= 1
        assert first[("rollout_guardrail_regressed", "error_rate")] == 0
        assert 0 <= first[("rollout_srm_p_value", "")] <= 1

        # And the gauges move as the evidence grows: the bounds narrow
        async def narrower() -> Series | None:
            found = await tested()
            return (
                found
                if found and found[UPPER] - found[LOWER] < first[UPPER] - first[LOWER]
                else None
            )

        await polled(narrower, what="narrower bounds")
        # When the rollout is aborted, its series are removed
        await scenario.send(scenario.command("abort", "cart"), flag="cart")
        await scenario.until(
            lambda: scenario.observed.decision_where(flag="cart", action="abort"),
            timeout=30,
            what="cart aborted",
        )

        async def gone() -> Series | None:
            found = await scrape()
            return found if found == {} else None

        await polled(gone, what="cart's series removed")
