"""A Node app's evaluations, as log records over OTLP/HTTP, counted exactly once across a
kill -9.

The app (``tests/otel/node_app.mjs``) uses only OpenFeature's server SDK, its OFREP
provider, OpenFeature's OpenTelemetry ``EventHook`` (each evaluation a log record named
``feature_flag.evaluation`` in its request's span, with the flag version) and the
OpenTelemetry SDK for Node, exporting OTLP/HTTP straight to the controller at the SDK's
own batch intervals (spans every 5 s, log records every second, as the docs' snippet
runs), so each evaluation reaches the controller seconds before its request span. A relay
between them sends every export twice, and holds an export while the controller is down.

While users are served, the controller is killed with SIGKILL, with the evaluations of
the last seconds waiting for their requests, and started again 3 s later. Each arm's
exposures, requests and errors equal what the app served: the joins the kill cut were
read again from the journal.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.settings import RedisSettings
from tests.otel.load import AppProcess, Load
from tests.scenarios.harness import Scenario
from tests.scenarios.otel.test_otel_apps import APPS
from tests.support.backing.services import free_port
from tests.support.otel.collector_kit import APP_ATTRIBUTE, assert_counted, written_logs
from tests.support.otel.http_relay import HttpRelay
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "node.checkout-http-kill"
BEFORE_KILL = 150
"""Requests served before the kill."""
AFTER_RESTART_SECONDS = 6.0
"""How long users are served once the controller is back."""
SDK_DEFAULTS = ["--spans-every-ms", "5000", "--logs-every-ms", "1000"]


def steady() -> Plan:
    """Half and half for longer than the test, no guardrail to end it: one flag version."""
    stage = Stage(percent=50, min_duration=timedelta(minutes=20), min_units_per_arm=0)
    return Plan(stages=[stage, Stage(percent=100, min_units_per_arm=0)], guardrails=[])


@pytest.mark.timeout(300)
async def test_a_node_apps_log_record_evaluations_over_http_count_once_across_a_kill_9(
    scenario: Scenario, otel_node: tuple[str, Path]
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_HTTP__REQUIRE_APP_KEYS="false",
    )
    scenario.start_daemon()
    await scenario.start(FLAG, steady())
    state = await scenario.until(partial(_served, scenario), timeout=30, what=f"{FLAG} served")

    async with HttpRelay(base) as relay:
        # Given a Node app exporting through a relay that sends every export twice
        app = await _app(base, relay.url, otel_node)
        load = Load(app, users=400, concurrency=1, seed=11)
        try:
            await eventually(
                partial(_past, load, BEFORE_KILL), timeout=120, what=f"{BEFORE_KILL} requests"
            )
            # When the controller is killed with SIGKILL while evaluations wait for their
            # request spans (exported every 5 s), and started again 3 s later
            scenario.daemon.kill()
            await asyncio.sleep(3)
            await asyncio.to_thread(scenario.start_daemon)
            await asyncio.sleep(AFTER_RESTART_SECONDS)  # users served after the restart
        finally:
            await load.stop()
            assert await app.stop() == 0, "the Node app did not exit cleanly"
        said: dict[str, Any] = orjson.loads(app.last_words)
        assert relay.errors == [], relay.errors
        written = written_logs(relay.exports["traces"], relay.exports["logs"])

    # Then each arm's exposures, requests and errors are what the app served, exactly
    served = said["served"]
    assert set(served) == {"treatment", "control"}, said
    for arm, counts in served.items():
        cell = written.cells[FLAG, arm]
        assert (cell.requests, cell.errors) == (counts["requests"], counts["errors"]), arm
    redis = RedisSettings(url=scenario.redis_url, key_prefix=scenario.prefix)
    async with connect(redis) as client:
        store = RedisAggregateStore(client, settings=redis, topic=scenario.topics["events"])
        version = int(state["version"])

        async def counted() -> bool:
            await assert_counted(store, FLAG, version, written)
            return True

        await eventually(counted, timeout=60, what="every exposure and outcome counted")


def _served(scenario: Scenario) -> dict[str, Any] | None:
    return next((s for s in scenario.observed.flag_states if s["flag"] == FLAG), None)


def _past(load: Load, requests: int) -> bool:
    assert load.requests >= requests, f"{load.requests} of {requests} requests"
    return True


async def _app(ofrep: str, otlp: str, otel_node: tuple[str, Path]) -> AppProcess:
    node, home = otel_node
    command = [node, str(APPS / "node_app.mjs"), ofrep, otlp, FLAG]
    faults = ["--errors", "0.1,0.2", "--latency-ms", "20,20", *SDK_DEFAULTS]
    env = {
        "OFREP_NODE_HOME": str(home),
        "OTEL_RESOURCE_ATTRIBUTES": f"{APP_ATTRIBUTE}={FLAG}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "120000",  # the relay holds exports while it is down
    }
    return await AppProcess.start([*command, *faults], name=FLAG, env=env)
