"""Apps with no code of ours, guarded from the OpenTelemetry they already emit.

Each app (``tests/otel/python_app.py``, ``tests/otel/node_app.mjs``) is a
small HTTP service that uses only OpenFeature, its OFREP provider, its
OpenTelemetry hook and the OpenTelemetry SDK exporting OTLP/HTTP: the
controller appears in it only as the OFREP URL and the OTLP endpoint. A load
driver sends it users' requests; the daemon reads each flag evaluation and
the server span around it, and gates the rollout on them.

* Python (span events on the request's span, no flag version: the version
  in force at the evaluation's time) and Node (log records in the request's
  trace, joined to the span, with the flag version OFREP's metadata gave):
  in each, a healthy twin's rollout completes, one whose new flow fails three
  times as often is rolled back on error rate, and one whose new flow is slower
  (twice in Python, three times in Node) is rolled back on its p95 latency. On
  a CI machine loaded far past its two cores, the Node twin twice as slow ran
  its whole five-minute stage without the gap showing above the noise of
  every request's scheduling delay, so its gap is wider.
* Flask (``tests/otel/flask_app.py``: Flask's own OpenTelemetry instrumentation
  makes the request's span and records the exception of a view that raises,
  with a stack trace longer than the intake keeps): a twin whose new flow
  raises three times as often is rolled back on error rate, counted from the
  very spans that carry those exceptions; a healthy twin completes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Metric, Stage
from controller.core.telemetry import REFUSAL_REASONS
from controller.settings import RedisSettings
from tests.integration.http.test_http import wait_status
from tests.otel.load import AppProcess, Load, unserved
from tests.scenarios.harness import Scenario
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APPS = Path(__file__).resolve().parents[2] / "otel"
USERS = 3000


def guardrail(metric: Metric) -> Guardrail:
    """Error rate at no tolerance; a latency within 10% of control's."""
    if metric == "error_rate":
        return Guardrail(metric=metric)
    return Guardrail(metric=metric, tolerance=0.10, relative=True)


def completing(metric: Metric) -> Plan:
    """Three short stages a healthy app passes within a minute."""
    return Plan(
        stages=[
            Stage(percent=20, min_duration=timedelta(seconds=4), min_units_per_arm=40),
            Stage(percent=50, min_duration=timedelta(seconds=4), min_units_per_arm=40),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[guardrail(metric)],
        min_metric_events=20,
        alpha=0.01,
    )


def held(metric: Metric) -> Plan:
    """A half-and-half stage that lasts past the test unless a guardrail ends it."""
    return Plan(
        stages=[
            Stage(percent=50, min_duration=timedelta(minutes=5), min_units_per_arm=40),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=[guardrail(metric)],
        min_metric_events=20,
        alpha=0.01,
    )


def _ended(scenario: Scenario, flag: str) -> dict[str, Any] | None:
    seen = scenario.observed
    return seen.decision_where(flag=flag, action="complete") or seen.decision_where(
        flag=flag, action="rollback"
    )


@asynccontextmanager
async def _serving(scenario: Scenario) -> AsyncIterator[str]:
    """The daemon serving OFREP and OTLP/HTTP on loopback (no app keys there): its URL."""
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    yield f"http://127.0.0.1:{port}"


async def _guarded(
    scenario: Scenario,
    apps: dict[str, AppProcess],
    plans: dict[str, Plan],
) -> dict[str, Load]:
    """Each app's rollout started and its flag served, then loaded until each rollout ends."""
    loads: dict[str, Load] = {}
    try:
        for flag, plan in plans.items():
            await scenario.start(flag, plan)
        for flag in plans:
            await scenario.until(
                partial(_served, scenario, flag), timeout=30, what=f"{flag} served"
            )
        loads = {
            flag: Load(app, users=USERS, concurrency=8, seed=len(flag))
            for flag, app in apps.items()
        }
        for flag in plans:
            await scenario.until(partial(_ended, scenario, flag), timeout=240, what=f"{flag} ended")
    finally:
        for load in loads.values():
            await load.stop()
        for app in apps.values():
            assert await app.stop() == 0, f"{app.name} did not exit cleanly"
    return loads


def _served(scenario: Scenario, flag: str) -> dict[str, Any] | None:
    return next((s for s in scenario.observed.flag_states if s["flag"] == flag), None)


def _assert_outcome(
    scenario: Scenario, *, completed: str, rolled_back: str, metric: str
) -> dict[str, Any]:
    done = scenario.observed.decision_where(flag=completed, action="complete")
    assert done is not None, scenario.observed.decision_where(flag=completed, action="rollback")
    rollback = scenario.observed.decision_where(flag=rolled_back, action="rollback")
    assert rollback is not None, scenario.observed.decision_where(flag=rolled_back)
    assert rollback["evidence"]["breach"] == metric, rollback["reason"]
    assert "regressed" in rollback["reason"]
    return rollback


async def _counted_units(scenario: Scenario, flag: str, versions: set[int]) -> tuple[int, int]:
    """Units exposed in each arm (treatment, control) over ``versions``."""
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        store = RedisAggregateStore(
            client,
            settings=RedisSettings(key_prefix=scenario.prefix),
            topic=scenario.topics["events"],
        )
        got = await store.read(flag, versions)
    return got.treatment.units, got.control.units


def sample(metrics: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def _versions(scenario: Scenario, flag: str) -> set[int]:
    return {s["version"] for s in scenario.observed.flag_states if s["flag"] == flag}


@pytest.mark.timeout(360)
async def test_a_python_app_with_no_code_of_ours_completes_and_its_faulty_twins_roll_back(
    scenario: Scenario,
) -> None:
    async with _serving(scenario) as base:
        # Given two twins of a Python service: OpenFeature + OFREP + its OTel hook + the SDK
        def python_app(flag: str, errors: str, latency: str = "20,20") -> Callable[[], Any]:
            command = [sys.executable, str(APPS / "python_app.py"), base, f"{base}/v1/traces"]
            faults = ["--errors", errors, "--latency-ms", latency]
            return partial(AppProcess.start, [*command, flag, *faults], name=flag)

        apps = {
            "py.checkout": await python_app("py.checkout", "0.05,0.05")(),
            "py.checkout-faulty": await python_app("py.checkout-faulty", "0.05,0.15")(),
            "py.checkout-slow": await python_app("py.checkout-slow", "0.05,0.05", "40,80")(),
        }
        # When each is rolled out while users send it requests
        loads = await _guarded(
            scenario,
            apps,
            {
                "py.checkout": completing("error_rate"),
                "py.checkout-faulty": held("error_rate"),
                "py.checkout-slow": held("latency_p95"),
            },
        )
        metrics = (await wait_status(f"{base}/metrics", 200)).text
    # ... each evaluation for a user (the hook's feature_flag.context.id), none per request
    assert sample(metrics, "rollout_otlp_http_exports_total", signal="traces") > 0
    assert sample(metrics, "rollout_otlp_http_evaluations_total", kind="request_level") == 0
    # Then the healthy one completed, the one failing 3x as often was rolled back on its
    # error rate, and the one twice as slow on its p95
    _assert_outcome(
        scenario, completed="py.checkout", rolled_back="py.checkout-slow", metric="latency_p95"
    )
    rollback = _assert_outcome(
        scenario, completed="py.checkout", rolled_back="py.checkout-faulty", metric="error_rate"
    )
    arms = rollback["evidence"]["arms"]
    assert min(arms["treatment"]["units"], arms["control"]["units"]) >= 40, arms
    treated, control = await _counted_units(
        scenario, "py.checkout", _versions(scenario, "py.checkout")
    )
    assert 0 < treated + control <= USERS
    missing = unserved(loads)
    assert not missing, missing


@pytest.mark.timeout(360)
async def test_a_node_app_with_no_code_of_ours_completes_and_its_faulty_twins_roll_back(
    scenario: Scenario, otel_node: tuple[str, Path]
) -> None:
    node, home = otel_node
    async with _serving(scenario) as base:
        # Given two twins of a Node service: OpenFeature + OFREP + its OTel EventHook + the SDK
        def node_app(flag: str, latency: str, errors: str = "0.05,0.05") -> Callable[[], Any]:
            command = [node, str(APPS / "node_app.mjs"), base, base, flag, "--latency-ms", latency]
            env = {"OFREP_NODE_HOME": str(home)}
            return partial(AppProcess.start, [*command, "--errors", errors], name=flag, env=env)

        apps = {
            "node.checkout": await node_app("node.checkout", "40,40")(),
            "node.checkout-slow": await node_app("node.checkout-slow", "40,120")(),
            "node.checkout-faulty": await node_app("node.checkout-faulty", "40,40", "0.05,0.15")(),
        }
        # When each is rolled out while users send it requests
        loads = await _guarded(
            scenario,
            apps,
            {
                "node.checkout": completing("latency_p95"),
                "node.checkout-slow": held("latency_p95"),
                "node.checkout-faulty": held("error_rate"),
            },
        )
        metrics = (await wait_status(f"{base}/metrics", 200)).text
    # ... from log records joined to their requests' spans, each with its flag version
    assert sample(metrics, "rollout_otlp_http_exports_total", signal="logs") > 0
    assert sample(metrics, "rollout_otlp_http_events_total", type="request") > 0
    assert sample(metrics, "rollout_otlp_http_evaluations_total", kind="guarded") == 0
    # Then the healthy one completed, the one failing 3x as often was rolled back on its
    # error rate, and the one three times as slow on its p95
    _assert_outcome(
        scenario,
        completed="node.checkout",
        rolled_back="node.checkout-faulty",
        metric="error_rate",
    )
    rollback = _assert_outcome(
        scenario,
        completed="node.checkout",
        rolled_back="node.checkout-slow",
        metric="latency_p95",
    )
    p95 = rollback["evidence"]["guardrails"]["latency_p95"]
    assert isinstance(p95, dict), p95
    missing = unserved(loads)
    assert not missing, missing


@pytest.mark.timeout(360)
async def test_a_flask_app_whose_new_flow_raises_three_times_as_often_is_rolled_back(
    scenario: Scenario,
) -> None:
    async with _serving(scenario) as base:
        # Given two twins of a Flask service: Flask's OTel instrumentation, OpenFeature + OFREP
        # + its OTel hook, the SDK; each failing request raises out of its view
        def flask_app(flag: str, errors: str) -> Callable[[], Any]:
            command = [sys.executable, str(APPS / "flask_app.py"), base, f"{base}/v1/traces"]
            return partial(AppProcess.start, [*command, flag, "--errors", errors], name=flag)

        apps = {
            "flask.checkout": await flask_app("flask.checkout", "0.05,0.05")(),
            "flask.checkout-faulty": await flask_app("flask.checkout-faulty", "0.05,0.15")(),
        }
        # When each is rolled out while users send it requests
        loads = await _guarded(
            scenario,
            apps,
            {
                "flask.checkout": completing("error_rate"),
                "flask.checkout-faulty": held("error_rate"),
            },
        )
        metrics = (await wait_status(f"{base}/metrics", 200)).text
    # ... whose failures Flask answered 500, each span carrying its exception's stack trace,
    # longer than the 4,096 characters the intake keeps of a value
    failed = 0
    for flag, app in apps.items():
        said = orjson.loads(app.last_words)
        assert said["exceptions"] > 0, (flag, said)
        assert said["shortest_stacktrace"] > 4096, (flag, said)
        assert loads[flag].statuses[500] > 0, (flag, loads[flag].statuses)
        assert loads[flag].failures == 0, (flag, loads[flag].failed)
        failed += said["failed_evaluations"]
    # ... and not one span refused for them. The only refusals are the evaluations the app's
    # provider failed to make (on a loaded machine an OFREP call may fail), as many as the
    # app itself recorded: it served its default, which is no arm.
    refused = {
        reason: sample(metrics, "rollout_otlp_http_refused_total", signal="traces", reason=reason)
        for reason in REFUSAL_REASONS
    }
    assert refused == {r: (failed if r == "evaluation_error" else 0) for r in REFUSAL_REASONS}
    # Then the healthy one completed and the one raising 3x as often was rolled back on its
    # error rate, both arms' errors counted
    rollback = _assert_outcome(
        scenario,
        completed="flask.checkout",
        rolled_back="flask.checkout-faulty",
        metric="error_rate",
    )
    arms = rollback["evidence"]["arms"]
    rates = {arm: arms[arm]["errors"] / arms[arm]["requests"] for arm in ("treatment", "control")}
    assert 0 < rates["control"] < rates["treatment"], arms
