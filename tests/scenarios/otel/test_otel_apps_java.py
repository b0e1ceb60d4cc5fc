"""A Java app with no code of ours, guarded from the OpenTelemetry it already emits.

``tests/otel/java`` is a checkout service built with Maven: OpenFeature's Java
SDK with its OFREP provider, the JDK's HTTP server, and the OpenTelemetry Java
agent, which makes each request's server span (with its HTTP status) and
exports it over OTLP/HTTP to the controller. Each evaluation is an event on
that span, shaped by the SDK's own ``Telemetry`` helper: the targeting key as
``feature_flag.context.id``, the flag version OFREP's metadata gave as
``feature_flag.version``. The controller appears in it only as the OFREP URL
and the agent's OTLP endpoint.

A healthy twin's rollout completes; one whose new flow fails three times as
often is rolled back on its error rate, counted per user and per version.
"""

from __future__ import annotations

import pytest

from tests.conftest import _service_unavailable
from tests.integration.http.test_http import wait_status
from tests.otel.java_app import JavaApp, java_app, otel_env
from tests.otel.load import AppProcess, start_all
from tests.scenarios.harness import Scenario
from tests.scenarios.otel.test_otel_apps import (
    USERS,
    _assert_outcome,
    _counted_units,
    _guarded,
    _serving,
    _versions,
    completing,
    held,
    sample,
)
from tests.support.backing.services import ServiceUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READY_SECONDS = 240.0
"""The agent instruments classes as they load: a JVM under it took 45-60 s to listen on
a machine whose load was 26 on 2 cores (13 s when quiet)."""


@pytest.fixture
def otel_java(pytestconfig: pytest.Config) -> JavaApp:
    """Java, and the checkout app ``make java-app`` built with the OpenTelemetry agent."""
    try:
        return java_app()
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)


async def _started(java: JavaApp, base: str, errors: dict[str, str]) -> dict[str, AppProcess]:
    """One app per flag failing at its ``errors`` rates, started side by side."""
    return await start_all(
        {
            flag: AppProcess.start(
                java.command(base, flag, "--errors", rates, "--latency-ms", "20,20"),
                name=flag,
                env=otel_env(base),
                ready_seconds=READY_SECONDS,
            )
            for flag, rates in errors.items()
        }
    )


@pytest.mark.timeout(600)
async def test_a_java_app_with_no_code_of_ours_completes_and_its_faulty_twin_rolls_back(
    scenario: Scenario, otel_java: JavaApp
) -> None:
    async with _serving(scenario) as base:
        # Given two twins of a Java service: OpenFeature + OFREP, the agent exporting OTLP
        apps = await _started(
            otel_java, base, {"java.checkout": "0.05,0.05", "java.checkout-faulty": "0.05,0.15"}
        )
        # When each is rolled out while users send it requests
        loads = await _guarded(
            scenario,
            apps,
            {"java.checkout": completing("error_rate"), "java.checkout-faulty": held("error_rate")},
        )
        metrics = (await wait_status(f"{base}/metrics", 200)).text
    # ... from the agent's spans, each evaluation for a user at the version it names
    assert sample(metrics, "rollout_otlp_http_exports_total", signal="traces") > 0
    assert sample(metrics, "rollout_otlp_http_evaluations_total", kind="request_level") == 0
    assert sample(metrics, "rollout_otlp_http_evaluations_total", kind="guarded") == 0
    # Then the healthy one completed and the one failing 3x as often was rolled back on its
    # error rate, both arms' requests counted
    rollback = _assert_outcome(
        scenario,
        completed="java.checkout",
        rolled_back="java.checkout-faulty",
        metric="error_rate",
    )
    arms = rollback["evidence"]["arms"]
    assert min(arms["treatment"]["units"], arms["control"]["units"]) >= 40, arms
    rates = {arm: arms[arm]["errors"] / arms[arm]["requests"] for arm in ("treatment", "control")}
    assert 0 < rates["control"] < rates["treatment"], arms
    treated, control = await _counted_units(
        scenario, "java.checkout", _versions(scenario, "java.checkout")
    )
    assert 0 < treated + control <= USERS
    for flag, load in loads.items():
        assert load.statuses[500] > 0, (flag, load.statuses)
        assert load.failures == 0, (flag, load.failed)
