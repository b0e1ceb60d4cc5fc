"""A Go app with no code of ours, guarded from the OpenTelemetry it already emits.

The app (``tests/otel/go``, built by ``make go-app``) is a small HTTP service
that uses only OpenFeature's Go SDK, the OFREP provider and the OpenTelemetry
hook of go-sdk-contrib, otelhttp's handler and the OpenTelemetry Go SDK
exporting OTLP/HTTP: the controller appears in it only as the OFREP URL and
the OTLP endpoint. The hook writes each evaluation as a
``feature_flag.evaluation`` event on the request's server span, with the
targeting key (``feature_flag.context.id``) and the flag version OFREP's
metadata gave (``feature_flag.version``); otelhttp records the answer's status.

A healthy twin's rollout completes; one whose new flow fails three times as
often is rolled back on error rate. A copy of the healthy one whose OFREP
server cannot be reached serves its default to everyone: the hook records each
failed evaluation without a variant, with ``error.type``, and the controller
refuses each as ``evaluation_error``, counting none for either arm.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _service_unavailable
from tests.integration.http.test_http import wait_status
from tests.otel.load import AppProcess, unserved
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
from tests.support.backing.services import ServiceUnavailable, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SOURCES = ROOT / "tests" / "otel" / "go"


def go_app_binary() -> Path:
    """The app ``make go-app`` built from ``tests/otel/go``; ServiceUnavailable when it is
    missing or older than a source (a test must not run an app its sources no longer say)."""
    binary = Path(os.environ.get("GO_APP", ROOT / ".go-app" / "checkout"))
    if not binary.is_file():
        raise ServiceUnavailable(
            f"the Go app is not built at {binary}: `make go-app` "
            "(go build from tests/otel/go, modules from the Go module proxy)"
        )
    built = binary.stat().st_mtime
    stale = sorted(p.name for p in SOURCES.iterdir() if p.stat().st_mtime > built)
    if stale:
        raise ServiceUnavailable(f"the Go app at {binary} is older than {stale}: `make go-app`")
    return binary


@pytest.fixture
def go_app(pytestconfig: pytest.Config) -> Path:
    """The built Go app; missing, the test fails under CI and is skipped elsewhere."""
    try:
        return go_app_binary()
    except ServiceUnavailable as exc:
        _service_unavailable(pytestconfig, exc)


@pytest.mark.timeout(360)
async def test_a_go_app_with_no_code_of_ours_completes_and_its_faulty_twin_rolls_back(
    scenario: Scenario, go_app: Path
) -> None:
    async with _serving(scenario) as base:
        # Given two twins of a Go service: OpenFeature + OFREP + its OTel hook, otelhttp, the SDK
        def app(flag: str, errors: str, ofrep: str = base, latency: str = "20,20") -> Any:
            command = [str(go_app), ofrep, base, flag, "--latency-ms", latency, "--errors", errors]
            return AppProcess.start(command, name=f"{flag} ({ofrep})")

        # ... and a third copy of the healthy one whose OFREP URL answers nothing: every
        # evaluation fails, and the hook records the failure (no variant, an error.type)
        nowhere = f"http://127.0.0.1:{free_port()}"
        apps = {
            "go.checkout": await app("go.checkout", "0.05,0.05"),
            "go.checkout-faulty": await app("go.checkout-faulty", "0.05,0.15"),
            "go.checkout-unreachable": await app("go.checkout", "0.05,0.05", nowhere, "200,200"),
        }
        # When each is rolled out while users send it requests
        loads = await _guarded(
            scenario,
            apps,
            {"go.checkout": completing("error_rate"), "go.checkout-faulty": held("error_rate")},
        )
        metrics = (await wait_status(f"{base}/metrics", 200)).text
    # ... each evaluation a span event on its request's server span, read whole: for a user
    # (the hook's feature_flag.context.id) at the version OFREP's metadata gave; the failed
    # ones refused as failed evaluations (the app served its default, no arm), none counted
    assert sample(metrics, "rollout_otlp_http_exports_total", signal="traces") > 0
    refused = partial(sample, metrics, "rollout_otlp_http_refused_total", signal="traces")
    assert refused(reason="evaluation_error") >= loads["go.checkout-unreachable"].requests > 0
    assert refused() == refused(reason="evaluation_error")
    assert sample(metrics, "rollout_otlp_http_evaluations_total", kind="request_level") == 0
    assert sample(metrics, "rollout_otlp_http_evaluations_total", kind="guarded") == 0
    # Then the healthy one completed and the one failing 3x as often was rolled back on its
    # error rate, each arm's 500s counted from otelhttp's spans
    rollback = _assert_outcome(
        scenario, completed="go.checkout", rolled_back="go.checkout-faulty", metric="error_rate"
    )
    arms = rollback["evidence"]["arms"]
    assert min(arms["treatment"]["units"], arms["control"]["units"]) >= 40, arms
    rates = {arm: arms[arm]["errors"] / arms[arm]["requests"] for arm in ("treatment", "control")}
    assert 0 < rates["control"] < rates["treatment"], arms
    treated, control = await _counted_units(
        scenario, "go.checkout", _versions(scenario, "go.checkout")
    )
    assert 0 < treated + control <= USERS
    missing = unserved(loads)
    assert not missing, missing
