"""An app with no code of ours, behind the real OpenTelemetry Collector, on Apache Kafka.

app → OTLP/HTTP → Collector → Apache Kafka → controller. The app
(``tests/otel/python_app.py``: OpenFeature, its OFREP provider and OpenTelemetry
hook, the OpenTelemetry SDK) sends its spans to the Collector ``make otelcol``
builds, run with ``ops/otelcol/config.yaml``, the configuration docs/otel.md shows:
the otlp receiver, the batch processor and contrib's kafka exporter (``otlp_proto``)
writing to topics the operator created. The daemon reads that topic
(``otlp.enabled``) and serves the app its flag over OFREP.

While users send requests, the Collector is restarted and the daemon is killed with
SIGKILL and started again. The healthy app's rollout completes, its twin that fails
three times as often is rolled back, and a third app's flag, held at one version,
counts exactly what the Collector wrote: every request span the users caused reached
Kafka, and each evaluation on them is one exposure and one request outcome.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.common import StoreUnavailable
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.dev.otelcol import Collector
from controller.settings import RedisSettings
from tests.otel.load import AppProcess, Load
from tests.scenarios.harness import Scenario
from tests.scenarios.otel.test_otel_apps import APPS, completing, held
from tests.scenarios.otel.worlds import collector_world, start_reading_otlp
from tests.support.otel.collector_kit import (
    APP_ATTRIBUTE,
    Written,
    assert_counted,
    read_topic,
)
from tests.support.otel.collector_kit import written_spans as decode_spans
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEALTHY, FAULTY, STEADY = "col.checkout", "col.checkout-faulty", "col.checkout-steady"
USERS = 3000
SPANS_PARTITIONS = 3
GUARD_SECONDS = 2.0
"""``http.otlp_guard_seconds``: evaluations this close to a new version count for none."""
STEP = 300
"""Request outcomes of the steady flag counted between one fault and the next."""


def steady() -> Plan:
    """Half and half for longer than the test, with no guardrail to end it: one version."""
    stage = Stage(percent=50, min_duration=timedelta(minutes=20), min_units_per_arm=0)
    last = Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0)
    return Plan(stages=[stage, last], guardrails=[])


@pytest.fixture
async def world(
    otelcol: Path, real_kafka: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[Scenario, Collector]]:
    """Topics made by the operator first (the test broker creates none by itself), a
    Collector writing to them, and a scenario whose daemon reads them."""
    async with collector_world(
        kafka=real_kafka,
        redis_url=redis_url,
        prefix=redis_namespace,
        workdir=tmp_path,
        label="col",
        partitions={"events": 4, "commands": 2, "spans": SPANS_PARTITIONS},
    ) as made:
        yield made


def _store(scenario: Scenario, client: Any) -> RedisAggregateStore:
    settings = RedisSettings(key_prefix=scenario.prefix)
    return RedisAggregateStore(client, settings=settings, topic=scenario.topics["events"])


async def _requests_counted(scenario: Scenario, flag: str, version: int) -> int:
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        got = await _store(scenario, client).read(flag, {version})
    return got.treatment.requests + got.control.requests


async def _count_reaches(scenario: Scenario, version: int, target: int) -> int:
    async def reached() -> int:
        try:
            got = await _requests_counted(scenario, STEADY, version)
        except StoreUnavailable as exc:
            # The test's own read, not the daemon's: on a loaded machine its connect may
            # time out once; only a store that stays unreachable fails the wait.
            raise AssertionError(f"the count could not be read: {exc}") from exc
        assert got >= target, f"{got} of {target} requests of {STEADY} counted"
        return got

    found: int = await scenario.until(reached, timeout=120, what=f"{target} requests counted")
    return found


async def _caught_up(scenario: Scenario, ends: dict[int, int]) -> None:
    """Wait until the offset the daemon stored for each spans partition is its end."""
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        source = RedisAggregateStore(
            client,
            settings=RedisSettings(key_prefix=scenario.prefix),
            topic=scenario.topics["events"],
            source=scenario.topics["spans"],
        )

        async def stored() -> bool:
            offsets = {p: await source.offset(p) or 0 for p in ends}
            assert offsets == ends, f"stored {offsets}, written {ends}"
            return True

        await scenario.until(stored, timeout=90, what="every spans record flushed")


def _served(scenario: Scenario, flag: str) -> dict[str, Any] | None:
    return next((s for s in scenario.observed.flag_states if s["flag"] == flag), None)


def _ended(scenario: Scenario, flag: str) -> dict[str, Any] | None:
    seen = scenario.observed
    return seen.decision_where(flag=flag, action="complete") or seen.decision_where(
        flag=flag, action="rollback"
    )


async def _app(ofrep: str, collector: Collector, flag: str, errors: str) -> AppProcess:
    """The zero-code app, exporting to the Collector; its resource names its flag."""
    traces = f"{collector.otlp_http_url}/v1/traces"
    command = [APPS / "python_app.py", ofrep, traces, flag, "--errors", errors]
    env = {"OTEL_RESOURCE_ATTRIBUTES": f"{APP_ATTRIBUTE}={flag}"}
    return await AppProcess.start([sys.executable, *map(str, command)], name=flag, env=env)


async def _past_guard(scenario: Scenario) -> None:
    """Once the steady flag is served, wait out the interval in which its evaluations
    would count for no version, so that every one the users cause counts."""
    await scenario.until(partial(_served, scenario, STEADY), timeout=30, what=f"{STEADY} served")
    after = time.monotonic() + GUARD_SECONDS + 1.0

    def past() -> bool:
        assert time.monotonic() >= after, "within the guard interval"
        return True

    await eventually(past, timeout=GUARD_SECONDS + 10, what="the guard interval over")


@pytest.mark.timeout(480)
async def test_an_app_behind_the_collector_on_kafka_rolls_out_and_counts_exactly_across_restarts(
    world: tuple[Scenario, Collector],
) -> None:
    scenario, collector = world
    ofrep = start_reading_otlp(scenario)
    # Given three apps with no code of ours sending their spans to the Collector
    app: Callable[[str, str], Any] = partial(_app, ofrep, collector)
    apps = {
        HEALTHY: await app(HEALTHY, "0.05,0.05"),
        FAULTY: await app(FAULTY, "0.05,0.15"),
        STEADY: await app(STEADY, "0.05,0.05"),
    }
    loads: dict[str, Load] = {}
    try:
        # When each one's rollout starts while users send it requests
        plans = {HEALTHY: completing("error_rate"), FAULTY: held("error_rate"), STEADY: steady()}
        for flag, plan in plans.items():
            await scenario.start(flag, plan)
        for flag in (HEALTHY, FAULTY):
            await scenario.until(partial(_served, scenario, flag), timeout=30, what=f"{flag}")
            loads[flag] = Load(apps[flag], users=USERS, concurrency=4, seed=len(flag))
        await _past_guard(scenario)
        version = int(_served(scenario, STEADY)["version"])  # type: ignore[index]
        loads[STEADY] = Load(apps[STEADY], users=USERS, concurrency=4, seed=3)
        # and the Collector is restarted under load
        counted = await _count_reaches(scenario, version, STEP)
        await asyncio.to_thread(collector.restart)
        # and the daemon is killed with SIGKILL mid-stream and started again
        counted = await _count_reaches(scenario, version, counted + STEP)
        scenario.daemon.kill()
        await asyncio.to_thread(scenario.start_daemon)
        await _count_reaches(scenario, version, counted + STEP)
        for flag in (HEALTHY, FAULTY):
            await scenario.until(partial(_ended, scenario, flag), timeout=240, what=f"{flag} ended")
    finally:
        for load in loads.values():
            await load.stop()
        for process in apps.values():
            assert await process.stop() == 0, f"{process.name} did not exit cleanly"
    # Then the healthy app's rollout completed and its faulty twin was rolled back
    assert scenario.observed.decision_where(flag=HEALTHY, action="complete"), _ended(
        scenario, HEALTHY
    )
    rollback = scenario.observed.decision_where(flag=FAULTY, action="rollback")
    assert rollback is not None, _ended(scenario, FAULTY)
    assert rollback["evidence"]["breach"] == "error_rate", rollback["reason"]
    # And, the Collector stopped (it sends what it holds first), ...
    await asyncio.to_thread(collector.stop)
    values, ends = await read_topic(scenario.bootstrap, scenario.topics["spans"], SPANS_PARTITIONS)
    written = decode_spans(values)
    await _caught_up(scenario, ends)
    _assert_exact(scenario, written, loads[STEADY], version)
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        await assert_counted(_store(scenario, client), STEADY, version, written)


def _assert_exact(scenario: Scenario, written: Written, load: Load, version: int) -> None:
    """Every request the users sent the steady app is a span on Kafka, each treated request
    one evaluation in treatment, and its flag stayed at one version throughout."""
    versions = {s["version"] for s in scenario.observed.flag_states if s["flag"] == STEADY}
    assert versions == {version}, versions
    assert written.spans[STEADY] == load.requests, (written.spans, load.requests, written.copies)
    assert load.failures == 0, load.failed
    treated = sum(n for (new_flow, _status), n in load.served.items() if new_flow)
    assert written.cells[STEADY, "treatment"].requests == treated, written.cells
    assert treated > STEP, load.served
