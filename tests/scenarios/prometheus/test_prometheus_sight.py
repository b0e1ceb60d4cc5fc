"""A Prometheus source that cannot see says so: the real daemon, broker, Redis and Prometheus
server. A treatment target that goes dark mid-stage holds the stage and alerts, and a
regression that began while it was dark is rolled back once it is scraped again; a label that
matches nothing alerts after the grace; a pipeline gated on Prometheus in every environment
reads each environment's series and rolls staging's regression back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.core.rollouts import Plan, parse_plan
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario
from tests.scenarios.pipelines.test_pipelines import Release, key_in
from tests.scenarios.prometheus.test_prometheus_gates import status, use
from tests.support.backing.prometheus_kit import (
    ARMS,
    COUNT,
    TOTAL,
    ArmApps,
    MetricsApp,
    PrometheusServer,
    error_rate,
    serve_traffic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
async def canary(
    prometheus_server_binary: str, tmp_path: Path
) -> AsyncIterator[tuple[ArmApps, PrometheusServer]]:
    """Treatment and control served by apps of their own, each a target Prometheus scrapes."""
    apps = ArmApps(MetricsApp(), MetricsApp())
    targets = [await apps.treatment.start(), await apps.control.start()]
    prometheus = PrometheusServer(tmp_path / "prometheus", targets, binary=prometheus_server_binary)
    try:
        yield apps, await asyncio.to_thread(prometheus.start)
    finally:
        prometheus.kill()
        await apps.treatment.close()
        await apps.control.close()


def one_stage_plan(*, first: float, arms: dict[str, str] = ARMS, floor: int = 300) -> Plan:
    """A first stage of ``first`` seconds gated on the error rate read from Prometheus."""
    guardrail = error_rate()
    guardrail["prometheus"] = {**guardrail["prometheus"], "arms": arms}
    return parse_plan(
        {
            "stages": [
                {"percent": 20, "min_duration": first, "min_units_per_arm": 0},
                {"percent": 100, "min_duration": 0, "min_units_per_arm": 0},
            ],
            "guardrails": [guardrail],
            "alpha": 0.01,
            "min_metric_events": floor,
        }
    )


@pytest.mark.timeout(300)
async def test_a_treatment_target_gone_dark_holds_alerts_and_its_regression_rolls_back(
    scenario: Scenario, canary: tuple[ArmApps, PrometheusServer]
) -> None:
    # Given a canary whose treatment and control are separate scrape targets, healthy,
    # in a first stage of 20 s gated on Prometheus alone
    apps, prometheus = canary
    port = use(scenario, prometheus.url)
    scenario.start_daemon()
    dark = asyncio.Event()

    def regresses_while_dark(_state: dict[str, Any], arm: Arm) -> float:
        return 0.3 if dark.is_set() and arm is Arm.TREATMENT else 0.02

    scenario.run("dark", serve_traffic(apps, "dark", scenario.state, errors=regresses_while_dark))
    await scenario.start("dark", one_stage_plan(first=20))
    started = await scenario.until(
        lambda: (s := scenario.state("dark")) is not None and s["percent"] == 20,
        timeout=60,
        what="the first stage",
    )
    assert started
    # ...and both arms read, past the guardrail's floor
    await scenario.until(
        lambda: apps.treatment.truth.get(("dark", "on"), [0])[0] > 1500,
        timeout=60,
        what="treatment past its floor",
    )
    # When the treatment's target stops answering its scrapes (and it starts to fail)
    apps.treatment.dark = True
    dark.set()
    # Then the flag is alerted on, naming why
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="dark", kind="metric_source_unavailable"),
        timeout=60,
        what="the source alert",
    )
    assert "treatment: no current sample of its series" in alert["summary"]
    # ...and its stage holds past its minimum time, saying why, while control grows
    held = await scenario.until(
        lambda: _held_past(port, "dark", seconds=22), timeout=90, what="a hold past 20 s"
    )
    assert "treatment: no current sample of its series" in held["verdict_reason"]
    assert not scenario.observed.decision_where(flag="dark", action="advance")
    # When the target is scraped again, the regression it hid is rolled back
    apps.treatment.dark = False
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag="dark", action="rollback"),
        timeout=90,
        what="the rollback once scraped again",
    )
    assert rollback["evidence"]["breach"] == "error_rate"
    assert not scenario.observed.decision_where(flag="dark", action="advance")


async def _held_past(port: int, flag: str, *, seconds: float) -> dict[str, Any] | None:
    """The rollout's status once its stage is ``seconds`` old and it holds; else None."""
    found = await status(port, flag)
    held = found["stage"] == 0 and found["verdict"] == "hold"
    return found if held and found["time_in_stage_s"] >= seconds else None


async def test_a_label_that_matches_nothing_alerts_after_the_grace(
    scenario: Scenario, canary: tuple[ArmApps, PrometheusServer]
) -> None:
    # Given a plan whose treatment label value matches no series the app exports
    apps, prometheus = canary
    port = use(scenario, prometheus.url)
    scenario.start_daemon()
    scenario.run("nomatch", serve_traffic(apps, "nomatch", scenario.state))
    await scenario.start(
        "nomatch", one_stage_plan(first=2, arms={"treatment": "onn", "control": "off"})
    )
    # Then, past alert_after_seconds of answers with no series, the flag is alerted on
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="nomatch", kind="metric_source_unavailable"),
        timeout=60,
        what="the alert on an answer with no series",
    )
    assert "treatment: count: no series: nothing matched" in alert["summary"]
    assert alert["details"]["guardrails"] == ["error_rate"]
    # ...and the stage holds, saying why
    held = await status(port, "nomatch")
    assert (held["stage"], held["verdict"]) == (0, "hold")
    assert "no series" in held["verdict_reason"]


ENVIRONMENTS = ("dev", "staging", "production")
BY_ENVIRONMENT = {
    role: query.replace('feature_flag_key="{{flag}}",', 'feature_flag_key="{{flag}}",'
                        ' environment="{{environment}}",')
    for role, query in (("count", COUNT), ("total", TOTAL))
}  # fmt: skip


@pytest.fixture
async def environments(
    prometheus_server_binary: str, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, MetricsApp], PrometheusServer]]:
    """An app per environment, each a target whose series Prometheus labels with it."""
    apps = {name: MetricsApp() for name in ENVIRONMENTS}
    targets = {name: await app.start() for name, app in apps.items()}
    labels = {target: {"environment": name} for name, target in targets.items()}
    prometheus = PrometheusServer(
        tmp_path / "prometheus", list(labels), binary=prometheus_server_binary, labels=labels
    )
    try:
        yield apps, await asyncio.to_thread(prometheus.start)
    finally:
        prometheus.kill()
        for app in apps.values():
            await app.close()


def twenty_times(_state: dict[str, Any], arm: Arm) -> float:
    return 0.4 if arm is Arm.TREATMENT else 0.02


def healthy_arms(_state: dict[str, Any], _arm: Arm) -> float:
    return 0.02


@pytest.mark.timeout(400)
@pytest.mark.parametrize("regressed", ["staging", "production"])
async def test_a_pipeline_gated_on_prometheus_in_every_environment_rolls_back_a_regression(
    scenario: Scenario,
    environments: tuple[dict[str, MetricsApp], PrometheusServer],
    regressed: str,
) -> None:
    # Given a pipeline whose every step gates on Prometheus alone, each environment's
    # series labelled with it, and a 20x error rate in one environment's treatment only
    # (production is the default environment: its rollout is keyed by the flag alone)
    apps, prometheus = environments
    use(scenario, prometheus.url)
    release = Release(scenario)
    scenario.start_daemon()
    flag = "pipe-prom"
    for name, app in apps.items():
        errors = twenty_times if name == regressed else healthy_arms
        work = serve_traffic(app, flag, scenario.state, errors=errors, key=key_in(flag, name))
        scenario.run(name, work)
    await release.start(flag, pipeline_on_prometheus())
    # Then each environment before it completes on its own series
    key = key_in(flag, regressed)
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag=key, action="rollback"),
        timeout=300,
        what=f"{regressed} rolled back",
    )
    for before in ENVIRONMENTS[: ENVIRONMENTS.index(regressed)]:
        done = scenario.observed.decision_where(flag=key_in(flag, before), action="complete")
        assert done is not None
        read = done["evidence"]["sources"]["reads"]["traffic"]
        asked = read["queries"]["total"]["treatment"]
        assert f'feature_flag_key="{flag}", environment="{before}"' in asked
    # ...and the regressed one is rolled back on its own
    read = rollback["evidence"]["sources"]["reads"]["error_rate"]
    asked = read["queries"]["total"]["treatment"]
    assert f'feature_flag_key="{flag}", environment="{regressed}"' in asked
    assert rollback["evidence"]["breach"] == "error_rate"
    stop = await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pipeline_stop"),
        timeout=60,
        what="the pipeline stopping",
    )
    assert stop["evidence"]["environment"] == regressed
    if regressed == "staging":
        assert ("pipeline_start", "production") not in release.decided(flag)
    unavailable = [a for a in scenario.observed.alerts if a["kind"] == "metric_source_unavailable"]
    assert unavailable == []


def pipeline_on_prometheus() -> dict[str, Any]:
    """dev, staging, production, each gated on the error rate of its own series."""
    queries = {**BY_ENVIRONMENT, "arms": ARMS}
    plan = {
        "stages": [
            {"percent": 20, "min_duration": "3s", "min_units_per_arm": 0},
            {"percent": 100, "min_duration": "0s", "min_units_per_arm": 0},
        ],
        "guardrails": [{"metric": "error_rate", "source": "prometheus", "prometheus": queries}],
        "alpha": 0.01,
        "min_metric_events": 300,
    }
    return {
        "name": "release",
        "plans": {"prom": plan},
        "plan": "prom",
        "steps": [{"environment": e} for e in ENVIRONMENTS],
    }
