"""The console's pipeline page in a real browser (Chromium via Playwright), on the real daemon.

A pipeline over dev, staging and production, production behind two approvals:
the page shows each environment in order, the gate before production and the
approvals it still needs; each approval, sent as a signed command, appears on
the open page without a reload, with who gave it and when; after the second,
production starts there. The list and each environment's rollout page link to
it. Screenshots go to ``$TEST_ARTIFACTS_DIR/console`` (default ``.artifacts/console``).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.async_api import Browser, Page

from controller.core.trust import signing
from controller.core.wire import sent_object
from controller.ctl.operate.commands import signed_model
from tests.scenarios.console.test_console import TOKEN, artifacts, signed_in
from tests.scenarios.harness import KEY_ID, Scenario
from tests.scenarios.pipelines.test_pipelines import PIPELINE, STEPS, Release, key_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "pipe-ui"
WAIT_MS = 90_000
ROLES = {"roles": [{"name": "approver", "actions": ["approve"], "environments": ["*"]}]}
GATED = {
    **PIPELINE,
    "steps": [
        {"environment": "dev"},
        {"environment": "staging"},
        {"environment": "production", "approval": {"needs": [{"role": "approver", "count": 2}]}},
    ],
}


class Approvers:
    """Two keys holding the approver role, approving production with signed commands."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.keys = {name: Ed25519PrivateKey.generate() for name in ("ana", "bo")}

    def records(self) -> str:
        records: dict[str, Any] = {
            KEY_ID: signing.public_key_text(self.scenario.key.public_key()),
            **{
                k: {"public_key": signing.public_key_text(v.public_key()), "roles": ["approver"]}
                for k, v in self.keys.items()
            },
        }
        return orjson.dumps(records).decode()

    async def approve(self, key_id: str) -> dict[str, Any]:
        command = sent_object(
            signed_model(
                "approve",
                FLAG,
                private_key=self.keys[key_id],
                key_id=key_id,
                actor=f"{key_id}-person",
                environment="production",
            )
        )
        found = await self.scenario.decided(
            command, flag=FLAG, what=f"{key_id}'s approval", timeout=60
        )
        assert found["outcome"] == "applied", found
        return found


async def statuses(page: Page) -> list[tuple[str | None, str | None]]:
    found = []
    for item in await page.locator("ol.pipeline li.environment").all():
        env, status = "data-environment", "data-status"
        found.append((await item.get_attribute(env), await item.get_attribute(status)))
    return found


@pytest.mark.timeout(360)  # its own waits (up to 240 s) run out before pytest's limit
async def test_the_pipeline_page_shows_each_environment_and_updates_with_each_approval(
    scenario: Scenario, browser: Browser
) -> None:
    # Given dev, staging and production, production behind two approvals, and apps in each
    people = Approvers(scenario)
    release = Release(scenario)
    scenario.configure(
        RC_HTTP__WEBHOOK_TOKEN=TOKEN,
        RC_ENGINE__OPERATOR_KEYS=people.records(),
        RC_ENGINE__ROLES=orjson.dumps(ROLES).decode(),
    )
    scenario.start_daemon()
    for environment in STEPS:
        scenario.run_apps(key_in(FLAG, environment))
    await release.start(FLAG, GATED)
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=FLAG, action="pipeline_gate"),
        timeout=240,
        what="production waiting for its approvals",
    )

    # When an operator opens the flag's pipeline page
    base = f"http://127.0.0.1:{release.port}"
    errors: list[str] = []
    page = await signed_in(browser, base, 1280, errors)
    await page.goto(f"{base}/ui/pipelines/{FLAG}")
    await page.locator(f'h1[data-flag="{FLAG}"]').wait_for(timeout=WAIT_MS)
    # Then it shows each environment in order, dev and staging done, production waiting
    assert await statuses(page) == [
        ("dev", "completed"),
        ("staging", "completed"),
        ("production", "pending"),
    ]
    # ...the gate before production and what it waits for: both approvals, none given
    gate = page.locator('li.gate[data-before="production"]')
    assert await gate.get_attribute("data-state") == "next"
    assert "approvals: 2 from approver" in await gate.inner_text()
    assert "approvals: 2 more from approver" in await gate.locator("ul.waits").inner_text()
    approvals = page.locator('li[data-environment="production"] section.approvals')
    assert await approvals.get_attribute("data-missing") == "2"
    assert await approvals.locator('p[data-role="approver"]').inner_text() == "approver: 0 of 2"
    assert "Still to approve: 2 more from approver" in await approvals.inner_text()
    # ...and links each started environment to its rollout page
    staging = page.locator('li[data-environment="staging"] h3 a')
    assert await staging.get_attribute("href") == f"/ui/rollouts/{FLAG}%40staging"
    assert await page.locator('li[data-environment="production"] h3 a').count() == 0
    await page.screenshot(path=artifacts() / "pipeline-1280.png", full_page=True)

    # When ana approves, while the page stays open
    await page.evaluate("window.stillThisPage = true")
    await people.approve("ana")
    # Then the page shows her approval, when, and the one still missing, without a reload
    one_missing = page.locator(
        'li[data-environment="production"] section.approvals[data-missing="1"]'
    )
    await one_missing.wait_for(timeout=WAIT_MS)
    given = await one_missing.locator('li.approval[data-key="ana"]').inner_text()
    assert given.startswith("ana-person (key ana, approver) at ")
    assert await one_missing.locator('p[data-role="approver"]').inner_text() == "approver: 1 of 2"
    assert "Still to approve: 1 more from approver" in await one_missing.inner_text()
    assert await page.evaluate("window.stillThisPage") is True

    # When bo approves too, production starts, and the page shows it
    await people.approve("bo")
    production = page.locator('li[data-environment="production"]:not([data-status="pending"])')
    await production.wait_for(timeout=WAIT_MS)
    assert await page.evaluate("window.stillThisPage") is True
    assert "Every approval given." in await production.locator("section.approvals").inner_text()
    assert await production.locator("section.approvals li.approval").count() == 2
    link = production.locator("h3 a")
    assert await link.get_attribute("href") == f"/ui/rollouts/{FLAG}"
    # And production's rollout page links back to the pipeline
    await link.click()
    await page.locator(f'h1[data-flag="{FLAG}"]').wait_for(timeout=WAIT_MS)
    back = page.locator("p.pipeline-link a")
    assert await back.get_attribute("href") == f"/ui/pipelines/{FLAG}"
    # ...as the list does, for the flag's rollout in every environment
    await page.goto(f"{base}/ui")
    for environment in STEPS:
        row = page.locator(f'tr[data-flag="{key_in(FLAG, environment)}"] a.pipeline-link')
        await row.wait_for(timeout=WAIT_MS)
        assert await row.get_attribute("href") == f"/ui/pipelines/{FLAG}"

    # And at 390 px wide the page fits the screen, and nothing went wrong in the browser
    narrow = await signed_in(browser, base, 390, errors)
    await narrow.goto(f"{base}/ui/pipelines/{FLAG}")
    await narrow.locator("ol.pipeline").wait_for(timeout=WAIT_MS)
    assert await narrow.evaluate("document.documentElement.scrollWidth") <= 390
    await narrow.screenshot(path=artifacts() / "pipeline-390.png", full_page=True)
    assert errors == []
