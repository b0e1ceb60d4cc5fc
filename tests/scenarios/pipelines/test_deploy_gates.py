"""Deploy gates on the real daemon, broker and Redis: the Argo Rollouts ``AnalysisTemplate``
of docs/rollouts.md, its conditions evaluated as Argo does, against the live verdict of a
rollout through every phase, read with a key of scope ``verdicts``."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.core.rollouts import Guardrail, Plan, Stage
from controller.core.wire.messages import Arm
from tests.integration.http.test_http import wait_status
from tests.scenarios.harness import Scenario, fast_plan, manual_plan
from tests.scenarios.operators.test_app_keys import Keys
from tests.support.backing.services import free_port
from tests.support.expr_lang import outcome

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "rollouts.md"
TOKEN = "operator-token-of-the-deploy-gate-test"
GATE_SECRET = "rc_app_deploy-gate-secret"


def argo_template() -> dict[str, Any]:
    """The AnalysisTemplate docs/rollouts.md shows (the file it includes)."""
    included = re.findall(r'--8<-- "(examples/deploy-gates/[^"]+)"', DOC.read_text())
    template = next(p for p in included if p.endswith("analysis-template.yaml"))
    loaded: dict[str, Any] = yaml.safe_load((ROOT / template).read_text())
    assert loaded["kind"] == "AnalysisTemplate"
    return loaded


def held_plan() -> Plan:
    """Three stages, the middle one held by the gate for a few seconds."""
    timing = ((5, 2, 20), (50, 6, 20), (100, 0, 0))
    return Plan(
        name="held",
        stages=[
            Stage(percent=p, min_duration=timedelta(seconds=s), min_units_per_arm=u)
            for p, s, u in timing
        ],
        guardrails=[Guardrail(metric="error_rate")],
    )


def faulty(state: dict[str, Any], arm: Arm) -> float:
    return 0.30 if arm is Arm.TREATMENT and state["percent"] >= 25 else 0.02


class ArgoMetric:
    """One metric of the template as Argo's web provider runs it, its args resolved."""

    def __init__(self, template: dict[str, Any], args: dict[str, str]) -> None:
        (self.metric,) = template["spec"]["metrics"]
        web = self.metric["provider"]["web"]
        assert web["jsonPath"] == "{$}"  # the whole answer is `result`
        self.url = _resolved(web["url"], args)
        self.headers = {h["key"]: _resolved(h["value"], args) for h in web["headers"]}

    async def measure(self, client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
        answer = await client.get(self.url, headers=self.headers)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        judged = outcome(self.metric["successCondition"], self.metric["failureCondition"], result)
        return result, judged


def _resolved(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*args\.([a-z-]+)\s*\}\}", lambda m: args[m.group(1)], text)


async def watched(
    client: httpx.AsyncClient, metric: ArgoMetric, scenario: Scenario
) -> list[tuple[dict[str, Any], str]]:
    """Every measurement until one is not Inconclusive (Argo's metric then ends)."""
    seen: list[tuple[dict[str, Any], str]] = []

    async def ended() -> bool:
        seen.append(await metric.measure(client))
        return seen[-1][1] != "Inconclusive"

    await scenario.until(ended, timeout=240, what=f"an ending for {metric.url}")
    return seen


async def test_the_argo_template_waits_while_a_rollout_decides_and_ends_with_it(
    scenario: Scenario,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_HTTP__WEBHOOK_TOKEN=TOKEN,
        RC_HTTP__READS_PER_SECOND="1000",
    )
    scenario.start_daemon()
    await wait_status(f"{base}/healthz", 200)
    made = await Keys(scenario).decided(
        "create", "deploy-gate", secret=GATE_SECRET, scopes=["verdicts"]
    )
    assert made["outcome"] == "applied", made
    template = argo_template()
    args = {"controller-url": base, "verdict-key": GATE_SECRET}
    good = ArgoMetric(template, {**args, "flag": "checkout"})
    bad = ArgoMetric(template, {**args, "flag": "search"})

    async with httpx.AsyncClient(timeout=30) as client:
        # Given no rollout yet: a clear 404, which Argo counts as an error, never a success
        unknown = await client.get(good.url, headers=good.headers)
        assert unknown.status_code == 404
        assert "no rollout for flag 'checkout'" in unknown.json()["error"]
        # When a healthy rollout and a faulty one run
        scenario.run_apps("checkout", rate=600)
        scenario.run_apps("search", errors=faulty)
        await scenario.start("checkout", held_plan())
        await scenario.start("search", fast_plan())
        healthy, failing = await asyncio.gather(
            watched(client, good, scenario), watched(client, bad, scenario)
        )

    # Then the healthy one is waited on while it runs and is held, and succeeds on completing
    *waiting, (last, judged) = healthy
    assert (judged, last["phase"], last["done"], last["ok"]) == (
        "Successful",
        "completed",
        True,
        True,
    )
    assert {r["phase"] for r, _ in waiting} <= {"running"}, waiting
    assert any(r["reason"].startswith("held by the gate") for r, _ in waiting), waiting
    assert all(not r["done"] for r, _ in waiting)
    assert last["version"] >= max((r["version"] for r, _ in waiting), default=0)
    # ...and the faulty one fails the analysis once rolled back, never succeeding before
    *before, (ended, judged) = failing
    assert (judged, ended["phase"], ended["done"], ended["ok"]) == (
        "Failed",
        "rolled_back",
        True,
        False,
    )
    assert ended["reason"].startswith("rolled back: ")
    assert all(j == "Inconclusive" and not r["done"] for r, j in before)


async def decided(scenario: Scenario, flag: str, action: str) -> dict[str, Any]:
    found: dict[str, Any] = await scenario.until(
        partial(scenario.observed.decision_where, flag=flag, action=action),
        timeout=30,
        what=f"{flag}: {action}",
    )
    return found


async def test_an_aborted_deploy_holds_its_services_flags_until_an_operator_resumes(
    scenario: Scenario,
) -> None:
    # Given a monitor for the checkout service's deploys, mapped to its two flags
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__WEBHOOK_TOKEN=TOKEN)
    scenario.map_monitor("deploy-checkout", ["checkout", "tip"])
    scenario.start_daemon()
    await wait_status(f"{base}/healthz", 200)
    for flag in ("checkout", "tip"):
        await scenario.start(flag, manual_plan())
        await decided(scenario, flag, "start")
    # When the deploy tool reports an aborted deploy with a hold
    body = {"monitor": "deploy-checkout", "status": "down", "incident_id": "d-1", "action": "hold"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        answer = await client.post("/webhooks/monitor", json=body, headers=auth)
        assert answer.status_code == 202, answer.text
        # Then both flags are paused by the monitor, alerted, and never killed
        for flag in ("checkout", "tip"):
            held = await decided(scenario, flag, "pause:monitor")
            assert held["evidence"]["monitor"] == "deploy-checkout", held
            await scenario.until(
                partial(scenario.observed.alert_where, flag=flag, kind="monitor_hold"),
                timeout=30,
                what=f"{flag}'s hold alert",
            )
        verdict = (await client.get("/rollouts/checkout/verdict", headers=auth)).json()
        assert (verdict["done"], verdict["phase"]) == (False, "paused")
        assert verdict["reason"].startswith("paused (monitor)"), verdict
        assert scenario.state("checkout")["status"] == "paused"  # type: ignore[index]
        # ...the monitor's recovery resumes nothing; an operator's resume does
        up = {"monitor": "deploy-checkout", "status": "up", "incident_id": "d-1"}
        assert (await client.post("/webhooks/monitor", json=up, headers=auth)).status_code == 202
        resumed = await scenario.decided(
            scenario.command("resume", "checkout"), flag="checkout", what="the resume"
        )
        assert resumed["outcome"] == "applied", resumed
        assert scenario.observed.decision_where(flag="checkout", action="kill") is None
        verdict = (await client.get("/rollouts/checkout/verdict", headers=auth)).json()
        assert (verdict["done"], verdict["phase"]) == (False, "running")
