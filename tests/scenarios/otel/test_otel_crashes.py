"""A worker with no requests at all, guarded on its crashes from the OpenTelemetry it emits.

The app (``tests/otel/worker_app.py``) is a queue worker that uses only OpenFeature, its
OFREP provider and OpenTelemetry hook, and the OpenTelemetry SDK's OTLP/HTTP exporters for
spans and logs: each job continues its producer's trace, evaluates the flag, and, when it
crashes, the SDK records the escaping exception as an ``exception`` span event and the
worker's crash handler logs a FATAL record in the job's trace. It sends no request: no
request event, no server span, no root span. Both twins' plans guard ``crash_count`` and
``exception_count`` and nothing else. The healthy twin completes; the twin whose new flow
crashes three times as often is rolled back on a crash or exception count, from those
span events and log records alone.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from tests.integration.http.test_http import wait_status
from tests.otel.load import AppProcess
from tests.scenarios.harness import Scenario
from tests.scenarios.otel.test_otel_apps import _guarded, _serving, sample

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = Path(__file__).resolve().parents[2] / "otel" / "worker_app.py"
COUNTS = [Guardrail(metric="crash_count"), Guardrail(metric="exception_count")]


def completing(guardrails: list[Guardrail] | None = None) -> Plan:
    """Three short stages a healthy worker passes within a minute (``guardrails``: the
    counts', left out)."""
    return Plan(
        stages=[
            Stage(percent=20, min_duration=timedelta(seconds=4), min_units_per_arm=40),
            Stage(percent=50, min_duration=timedelta(seconds=4), min_units_per_arm=40),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=COUNTS if guardrails is None else guardrails,
        min_metric_events=20,
        alpha=0.01,
    )


def held(guardrails: list[Guardrail] | None = None) -> Plan:
    """A half-and-half stage that lasts past the test unless a guardrail ends it
    (``guardrails``: the counts', left out)."""
    return Plan(
        stages=[
            Stage(percent=50, min_duration=timedelta(minutes=5), min_units_per_arm=40),
            Stage(percent=100, min_duration=timedelta(0), min_units_per_arm=0),
        ],
        guardrails=COUNTS if guardrails is None else guardrails,
        min_metric_events=20,
        alpha=0.01,
    )


@pytest.mark.timeout(360)
async def test_a_worker_that_crashes_three_times_as_often_is_rolled_back_with_no_requests(
    scenario: Scenario,
) -> None:
    async with _serving(scenario) as base:
        # Given two twins of a queue worker: OpenFeature + OFREP + its OTel hook, the SDK's
        # span and log exporters; the faulty twin's new flow crashes 3x as often
        async def worker(flag: str, crashes: str) -> AppProcess:
            command = [sys.executable, str(APP), base, base, flag, "--crashes", crashes]
            return await AppProcess.start(command, name=flag)

        apps = {
            "worker.cache": await worker("worker.cache", "0.05,0.05"),
            "worker.cache-faulty": await worker("worker.cache-faulty", "0.05,0.15"),
        }
        # When each is rolled out while its queue feeds it jobs
        loads = await _guarded(
            scenario, apps, {"worker.cache": completing(), "worker.cache-faulty": held()}
        )
        metrics = (await wait_status(f"{base}/metrics", 200)).text
    # ... and each worker did crash, recording every crash
    for flag, app in apps.items():
        said = orjson.loads(app.last_words)
        assert said["crashes"] > 0, (flag, said)
        assert loads[flag].failures == 0, (flag, loads[flag].failed)
    # ... from spans and log records that made exposures, crashes and exceptions, and not one
    # request: there was none to make one from
    assert sample(metrics, "rollout_otlp_http_exports_total", signal="logs") > 0
    for kind in ("exposure", "crash", "exception"):
        assert sample(metrics, "rollout_otlp_http_events_total", type=kind) > 0, kind
    assert sample(metrics, "rollout_otlp_http_events_total", type="request") == 0
    # Then the healthy twin completed, and the one crashing 3x as often was rolled back on
    # its crashes or its exceptions, per exposure, with no request in either arm
    observed = scenario.observed
    done = observed.decision_where(flag="worker.cache", action="complete")
    assert done is not None, observed.decision_where(flag="worker.cache", action="rollback")
    rollback = observed.decision_where(flag="worker.cache-faulty", action="rollback")
    assert rollback is not None, observed.decision_where(flag="worker.cache-faulty")
    breach = rollback["evidence"]["breach"]
    assert breach in ("crash_count", "exception_count"), rollback["reason"]
    assert "regressed" in rollback["reason"]
    arms = rollback["evidence"]["arms"]
    assert all(arms[arm]["requests"] == 0 for arm in ("treatment", "control")), arms
    rates = {arm: arms[arm]["crashes"] / arms[arm]["exposures"] for arm in arms}
    assert 0 < rates["control"] < rates["treatment"], arms
    test = rollback["evidence"]["guardrails"][breach]
    assert test["unit_of_analysis"] == "unit", test
