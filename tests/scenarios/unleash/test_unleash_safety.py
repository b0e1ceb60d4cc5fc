"""Safety never waits on a slow Unleash, and what Unleash would serve is what counts.

The real daemon, broker and Redis, and a real ``unleash-server``: once behind
a proxy that drips one feature's reads a byte at a time, once changed by hand.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.dev.unleash import UnleashServer
from tests.scenarios.harness import Scenario
from tests.scenarios.unleash.test_unleash import backend_metrics, served
from tests.scenarios.unleash.unleash_kit import Person, feature_name, serve_from, unleash_plan
from tests.support.backing.services import free_port
from tests.support.dripping import Dripper, upstream

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def applied_within_1s(port: int) -> float:
    """How many writes the daemon's /metrics shows served within 1 s of their decision."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        answer = await http.get("/metrics")
    answer.raise_for_status()
    return next(
        s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
        if s.name == "rollout_backend_apply_latency_seconds_bucket" and s.labels["le"] == "1.0"
    )


async def test_a_feature_whose_reads_drip_holds_back_no_other_flag_s_kill(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given two Unleash-backed rollouts, the daemon reaching Unleash through a proxy
    slow, fast = feature_name(), feature_name()
    slow_flag, fast_flag = "checkout.unleash-dripping", "checkout.unleash-killed"
    address = urlsplit(unleash_server.url)
    dripping = False

    def drips(method: str, path: str) -> bool:
        return dripping and method == "GET" and path.endswith(f"/features/{slow}")

    # a byte every 1.5 s: under the 2 s per-read timeout, so only a deadline ends a read
    proxy = Dripper(upstream(str(address.hostname), int(address.port or 80)), drips, every=1.5)
    port = free_port()
    serve_from(scenario, unleash_server)
    scenario.configure(RC_UNLEASH__URL=await proxy.start(), RC_HTTP__PORT=str(port))
    try:
        scenario.start_daemon()
        await scenario.start(slow_flag, unleash_plan(slow))
        await scenario.start(fast_flag, unleash_plan(fast))
        await served(scenario, person, slow, enabled=True, percent=1)
        await served(scenario, person, fast, enabled=True, percent=1)
        await backend_metrics(
            port, until=lambda m: m[("rollout_backend_writes_total", "applied")] >= 2
        )
        before_1s = await applied_within_1s(port)
        # When the slow feature's reads start dripping in, a byte at a time
        dripping = True
        await scenario.until(lambda: proxy.dripping, timeout=30, what="a read dripping")
        # Then a kill of the other flag reaches Unleash while that feature's read drips
        await scenario.send(scenario.command("kill", fast_flag), flag=fast_flag)
        await served(scenario, person, fast, enabled=False)
        await backend_metrics(
            port, until=lambda m: m[("rollout_backend_writes_total", "applied")] >= 3
        )
        # And within a second of the decision, by the daemon's own measure
        assert await applied_within_1s(port) == before_1s + 1
        # And the dripping read was cut at its deadline and alerted as Unleash unreachable
        alert = await scenario.until(
            lambda: scenario.observed.alert_where(kind="backend_unreachable"),
            timeout=30,
            what="the unreachable alert",
        )
        assert alert["details"]["flag"] == slow_flag
        assert "no complete answer within 2 s" in alert["summary"]
        assert (await backend_metrics(port))[("rollout_backend_unreachable", "")] == 1
        assert (await person.serving(slow) or {}).get("percent") == 1  # its last state stays
    finally:
        await proxy.close()


async def test_a_default_strategy_added_beside_the_controller_s_pauses_the_rollout(
    scenario: Scenario, unleash_server: UnleashServer, person: Person
) -> None:
    # Given an Unleash-backed rollout at 1%
    feature, flag = feature_name(), "checkout.unleash-everyone"
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    await scenario.start(flag, unleash_plan(feature))
    await served(scenario, person, feature, enabled=True, percent=1)
    # When a person adds a `default` strategy in Unleash: everyone would get the feature
    added = await person.add_strategy(feature, "default")
    # Then the rollout pauses, with an alert naming the strategy
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag=flag, kind="backend_drift"),
        timeout=30,
        what="the drift alert",
    )
    assert alert["details"]["changes"] == [
        f"a default strategy ({added}) was added beside the controller's, serving everyone"
    ]
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pause:backend_drift"),
        timeout=30,
        what="the pause decision",
    )
    now = await person.serving(feature) or {}
    assert (now.get("percent"), now.get("strategies")) == (1, 2)  # nothing was removed
