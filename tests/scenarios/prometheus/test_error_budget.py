"""The error budget as a gate on a real Prometheus: while the service's burn rate is above
its threshold over every window, advances wait; a regression is still rolled back at once;
when the burn stops, the rollout goes on."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.core.rollouts import Plan, parse_plan
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario
from tests.scenarios.prometheus.test_prometheus_gates import status, triple_errors, use
from tests.support.backing.prometheus_kit import (
    MetricsApp,
    PrometheusServer,
    error_rate,
    scraped_app,
    serve_traffic,
)
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVICE = "checkout-service"
"""The service's own requests, apart from the flags': what its SLO is about."""
SLO_ERRORS = 0.01
"""A 99% availability objective: 1% of requests may fail."""
BURN = (
    f'(sum(rate(http_requests_total{{feature_flag_key="{SERVICE}", code="500"}}[{{{{window}}}}]))'
    " or vector(0))"
    f' / sum(rate(http_requests_total{{feature_flag_key="{SERVICE}"}}[{{{{window}}}}]))'
    f" / {SLO_ERRORS}"
)
ABOVE = 14.4


@pytest.fixture
async def scraped(
    prometheus_server_binary: str, tmp_path: Path
) -> AsyncIterator[tuple[MetricsApp, PrometheusServer]]:
    async with scraped_app(tmp_path / "prometheus", prometheus_server_binary) as both:
        yield both


def plan() -> Plan:
    """Stages of a few seconds gated on Prometheus' error rate, held by the burn rate over
    10 s and 30 s (the SRE workbook's multi-window condition, scaled to a test)."""
    stages: list[dict[str, Any]] = [
        {"percent": p, "min_duration": 3, "min_units_per_arm": 0} for p in (10, 50)
    ]
    stages.append({"percent": 100, "min_duration": 0, "min_units_per_arm": 0})
    return parse_plan(
        {
            "stages": stages,
            "guardrails": [error_rate()],
            "alpha": 0.01,
            # 1,000 requests an arm: a 3x error rate (2% -> 6%) is seen at a look 95% of
            # the time (docs of the Prometheus gates' scenario)
            "min_metric_events": 1000,
            "burn_rate": {"query": BURN, "above": ABOVE, "windows": ["10s", "30s"]},
            "windows": [],
        }
    )


async def service_traffic(app: MetricsApp, burning: asyncio.Event) -> None:
    """The service's requests, 200 a second: half fail while ``burning`` is set (a burn
    rate of 50), none otherwise."""
    rng = random.Random(SERVICE)
    while True:
        for _ in range(10):
            failed = burning.is_set() and rng.random() < 0.5
            app.serve(SERVICE, Arm.CONTROL, error=failed, latency_ms=20.0)
        await asyncio.sleep(0.05)


async def burn_rate(prometheus: PrometheusServer, window: str) -> float | None:
    """What Prometheus answers for the burn rate over ``window`` now (None: no answer)."""
    query = BURN.replace("{{window}}", window)
    async with httpx.AsyncClient(base_url=prometheus.url, timeout=10) as http:
        answer = await http.get("/api/v1/query", params={"query": query})
    found = answer.json()["data"]["result"]
    return float(found[0]["value"][1]) if found else None


@pytest.mark.timeout(600)
async def test_a_burning_budget_holds_advances_never_rollbacks_and_the_rollout_goes_on(
    scenario: Scenario, scraped: tuple[MetricsApp, PrometheusServer]
) -> None:
    # Given a service burning its error budget 50 times as fast as its SLO allows,
    # as its Prometheus sees over both windows
    app, prometheus = scraped
    port = use(scenario, prometheus.url)
    scenario.start_daemon()
    burning = asyncio.Event()
    burning.set()
    scenario.run(SERVICE, service_traffic(app, burning))
    seen: dict[str, float | None] = {}

    async def over_threshold() -> bool:
        seen.update({w: await burn_rate(prometheus, w) for w in ("10s", "30s")})
        over = all(v is not None and v > ABOVE for v in seen.values())
        assert over, f"the burn rate read {seen}"
        return over

    await eventually(over_threshold, timeout=60, what="the burn rate over its threshold")
    # When a healthy flag and a twin failing three times as often in treatment start
    # rolling out under a plan held by that burn rate
    scenario.run("held", serve_traffic(app, "held", scenario.state, rate=600))
    scenario.run(
        "broken", serve_traffic(app, "broken", scenario.state, rate=600, errors=triple_errors)
    )
    for flag in ("held", "broken"):
        await scenario.start(flag, plan())
    # Then the healthy flag's advance waits, with reason error_budget and what was read
    wait = await scenario.until(
        lambda: scenario.observed.decision_where(flag="held", action="wait"),
        timeout=120,
        what="the healthy flag's advance to wait on the error budget",
    )
    assert wait["reason"].startswith("error_budget: the burn rate is above 14.4")
    budget = wait["evidence"]["error_budget"]
    assert budget["holds"] is True
    assert all(budget["windows"][w] > ABOVE for w in ("10s", "30s")), budget
    shown = await status(port, "held")
    assert shown["stage"] == 0
    assert shown["window_wait"].startswith("error_budget")
    assert shown["next_move"]["why"].startswith("error_budget")
    # ...and the twin's regression is rolled back all the same, while the budget burns
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag="broken", action="rollback"),
        timeout=180,
        what="the twin rolled back while the budget burns",
    )
    assert rollback["evidence"]["breach"] == "error_rate"
    assert rollback["evidence"]["error_budget"]["holds"] is True
    assert not scenario.observed.decision_where(flag="held", action="advance")
    # When the burn stops
    burning.clear()
    # Then the held rollout goes on, and completes
    advance = await scenario.until(
        lambda: scenario.observed.decision_where(flag="held", action="advance"),
        timeout=120,
        what="the held flag to advance once the burn stopped",
    )
    assert advance["stage"] == 1
    assert advance["evidence"]["error_budget"]["holds"] is False
    assert advance["evidence"]["error_budget"]["windows"]["10s"] <= ABOVE
    done = await scenario.until(
        lambda: scenario.observed.decision_where(flag="held", action="complete"),
        timeout=180,
        what="the held flag to complete",
    )
    assert done["phase_after"] == "completed"
    assert not scenario.observed.decision_where(flag="held", action="rollback")
