"""The web console in a real browser (Chromium driven by Playwright), on the real daemon.

The daemon, broker and Redis are the scenario's; the browser is Debian's
``chromium``, launched by the ``playwright`` package's bundled driver. The
screenshots are written to ``$TEST_ARTIFACTS_DIR/console`` (default
``.artifacts/console``) for people to look at.
"""

from __future__ import annotations

import os
import re
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page

from controller.core.rollouts import Guardrail, Plan, Stage
from controller.core.wire.messages import Arm
from tests.scenarios.harness import Scenario, fast_plan
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "console-test-token"
HOSTILE = '<img src=x onerror="document.title=1"> & "quotes"'
ROOT = Path(__file__).resolve().parents[3]


def artifacts() -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / ".artifacts")) / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def faulty(state: dict[str, Any], arm: Arm) -> float:
    """Treatment fails three times as often once the flag reaches 25%."""
    return 0.30 if arm is Arm.TREATMENT and state["percent"] >= 25 else 0.02


def failing_together(_state: dict[str, Any], _arm: Arm, unit: str) -> float:
    """Units fail together: one unit in 25 (a broken account) fails every request, the
    others one in 200, alike in both arms. The gate's interval on units widens for it."""
    return 1.0 if zlib.crc32(unit.encode()) % 25 == 0 else 0.005


def held_at_half() -> Plan:
    """A stage that never advances by itself within the test, at 50%: both arms soon hold
    enough units to say how they vary."""
    return Plan(
        name="by-hand",
        stages=[
            Stage(percent=p, min_duration=timedelta(minutes=10), min_units_per_arm=0)
            for p in (50, 100)
        ],
        guardrails=[Guardrail(metric="error_rate")],
        alpha=0.01,  # peeked continuously: keep a false rollback of identical arms rare
    )


def ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


async def console_world(scenario: Scenario, port: int) -> dict[str, Any]:
    """A running rollout (held at stage 1 by a slow plan, its units failing together) and a
    rolled-back one."""
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_HTTP__WEBHOOK_TOKEN=TOKEN,
        RC_HISTORY__MIN_INTERVAL_SECONDS="0.2",
    )
    scenario.start_daemon()
    scenario.run_apps("checkout", rate=600, unit_errors=failing_together)
    scenario.run_apps("search", errors=faulty)
    await scenario.start("checkout", held_at_half())
    await scenario.start("search", fast_plan())
    rollback: dict[str, Any] = await scenario.until(
        lambda: scenario.observed.decision_where(flag="search", action="rollback"),
        timeout=120,
        what="the faulty flag's rollback",
    )
    await scenario.until(
        lambda: scenario.observed.decision_where(flag="checkout", action="start"),
        timeout=30,
        what="the healthy flag's start",
    )
    return rollback


async def signed_in(browser: Browser, base: str, width: int, errors: list[str]) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    page.on("console", lambda m: _console_error(m, errors))
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    await page.goto(f"{base}/ui?token={TOKEN}")
    return page


def _console_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)


async def test_console_shows_rollouts_the_crossing_and_live_decisions(
    scenario: Scenario, browser: Browser
) -> None:
    # Given a running rollout and one rolled back by its gate
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rollback = await console_world(scenario, port)
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        # Then the console wants the token, and the history is served as JSON
        assert (await http.get("/ui")).status_code == 401
        assert (await http.get("/ui/fragment/list")).status_code == 401
        assert (await http.get("/ui/static/console.js")).status_code == 200
        # ...and the rollouts' reads want the operator's token, never an app key
        assert (await http.get("/rollouts/search/history")).status_code == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        history = (await http.get("/rollouts/search/history", headers=bearer)).json()
    crossed = [
        p
        for stage in history["stages"]
        for p in stage["points"]
        if (p["guardrails"].get("error_rate") or {}).get("regressed")
    ]
    assert crossed
    assert crossed[0]["verdict"] == "rollback"
    assert crossed[0]["ts_ms"] == ms(rollback["ts"])

    # When an operator opens the console with the token
    errors: list[str] = []
    page = await signed_in(browser, base, 1280, errors)
    # Then the token leaves the address bar for an HttpOnly, SameSite=Strict cookie
    assert page.url == f"{base}/ui"
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["value"] != TOKEN
    assert TOKEN not in await page.content()
    # And the list shows the running and the rolled-back rollout
    assert await page.locator('tr[data-flag="checkout"]').get_attribute("data-phase") == "running"
    assert await page.locator('tr[data-flag="search"]').get_attribute("data-phase") == (
        "rolled_back"
    )
    assert "failed" in await page.locator('tr[data-flag="search"] .health').inner_text()
    # ...naming the stage the rollout failed at as its alert does
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag="search", kind="rollback"),
        timeout=30,
        what="the rollback alert",
    )
    label = alert["details"]["at_stage"]["label"]
    assert f"rolled back at {label}:" in alert["summary"]
    stage_cell = page.locator('tr[data-flag="search"] td[data-label="stage"]')
    assert await stage_cell.inner_text() == label
    await page.screenshot(path=artifacts() / "list-1280.png", full_page=True)

    # When they follow the rolled-back flag's link with the keyboard
    await page.locator('tr[data-flag="search"] a').focus()
    await page.keyboard.press("Enter")
    await page.locator('h1[data-flag="search"]').wait_for()
    # Then its summary and its timeline name the failed stage as the alert does
    assert await page.locator("dl.summary dd.stage").inner_text() == label
    assert await page.locator("ol.timeline li.failed b").inner_text() == label
    # And its chart shows the bound crossing the tolerance at the rollback's time
    chart = page.locator('svg.chart[data-metric="error_rate"]')
    crossing = chart.locator("circle.crossing")
    assert int(await crossing.get_attribute("data-ts") or 0) == ms(rollback["ts"])
    bound = float(await crossing.get_attribute("data-value") or "nan")
    assert bound == pytest.approx(rollback["evidence"]["guardrails"]["error_rate"]["lower"], 1e-3)
    tolerance_y = float(await chart.locator("line.tolerance").get_attribute("y1") or "nan")
    assert float(await crossing.get_attribute("cy") or "nan") < tolerance_y  # drawn above it
    marks = [await m.get_attribute("data-ts") for m in await chart.locator("line.decision").all()]
    assert str(ms(rollback["ts"])) in marks
    assert f"in {label}." in (await chart.locator("desc").text_content() or "")
    assert label in await chart.locator("text.stage-label").all_text_contents()
    assert await page.locator('li.decision[data-action="rollback"]').count() == 1
    # And it opens with the verdict, the rollback's reason in percentage points with its
    # interval, before the evidence; and offers no command, since none applies any more
    verdict = await page.locator("p.verdict").inner_text()
    assert verdict == f"Rolled back at {label}: {rollback['reason']}"
    assert re.match(r"error rate \+[\d.]+ pp \[[-+\d.]+, [-+\d.]+\]", rollback["reason"])
    assert await page.locator("pre.commands").count() == 0
    assert "no command applies" in await page.locator("#h-commands + p").inner_text()
    # And the chart speaks in units: Δ in pp on its axis and description; beside it each
    # arm's own error rate, drawn as two lines and labelled in %
    assert " pp [" in (await chart.locator("desc").text_content() or "")
    arms = page.locator('svg.arms-chart[data-metric="error_rate"]')
    assert await arms.locator("polyline").count() == 2
    labels = await arms.locator("text.arm-label").all_text_contents()
    assert [label.split()[0] for label in labels] == ["treatment", "control"]
    assert all(re.fullmatch(r"\w+ [\d.]+%", label) for label in labels), labels
    await page.screenshot(path=artifacts() / "rollout-1280.png", full_page=True)
    await page.screenshot(path=artifacts() / "console.png")  # docs/images/console.png

    # When the running rollout's page is open, its units failing together
    await page.goto(f"{base}/ui/rollouts/checkout")
    # Then its guardrail says how much wider that makes the interval, and what it costs
    widening = page.locator('figure[data-metric="error_rate"] figcaption .widening')
    await widening.wait_for(timeout=90_000)
    said = re.fullmatch(
        r"Units that send many requests or fail together make the interval ([\d.]+) times as"
        r" wide: the stage needs about ([\d.]+) times as many units to see the same difference",
        await widening.inner_text(),
    )
    assert said is not None
    wider, units = float(said[1]), float(said[2])
    assert wider > 1.05
    assert units == pytest.approx(wider * wider, abs=0.1 * wider + 0.1)  # each rounded
    # ...as the gate's evidence says: tested on units, its variance inflated by them
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        served = await http.get("/rollouts/checkout", headers=bearer)
    tested = served.json()["evidence"]["guardrails"]["error_rate"]
    assert tested["unit_of_analysis"] == "unit"
    assert tested["design_effect"] > 1.0
    assert tested["widening"] > 1.05
    # And what the running stage can detect by its minimum, and when it would catch +50%
    power = page.locator('figure[data-metric="error_rate"] figcaption .stage-power')
    await power.wait_for(timeout=90_000)
    detectable = await power.inner_text()
    assert re.fullmatch(
        r"Detectable from \+[\d,.]+% by the stage's minimum \(80% power\);"
        r" \+50% (now|in .+ more|in over 30 days)",
        detectable,
    ), detectable
    await page.screenshot(path=artifacts() / "rollout-widening-1280.png", full_page=True)

    # When a decision is taken while the running rollout's page is open
    await page.evaluate("window.stillThisPage = true")
    pause = scenario.command("pause", "checkout", reason=HOSTILE)
    await scenario.send(pause, flag="checkout")
    # Then it appears without a reload, its outside text shown as text
    decision = page.locator('li.decision[data-action="pause"]')
    await decision.wait_for(timeout=30_000)
    assert await page.evaluate("window.stillThisPage") is True
    assert HOSTILE in await decision.inner_text()
    assert await page.locator("main img").count() == 0
    assert await page.title() != "1"

    # And at 390 px wide the pages fit the screen
    narrow = await signed_in(browser, base, 390, errors)
    await narrow.screenshot(path=artifacts() / "list-390.png", full_page=True)
    await narrow.goto(f"{base}/ui/rollouts/search")
    assert await narrow.evaluate("document.documentElement.scrollWidth") <= 390
    await narrow.screenshot(path=artifacts() / "rollout-390.png", full_page=True)
    # And nothing went wrong in the browser
    assert errors == []
