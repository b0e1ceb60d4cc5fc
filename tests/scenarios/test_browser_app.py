"""A browser app with no Python in it moves one rollout forward and rolls another back.

The page (``clients/js/examples/web``) is bundled with esbuild from npm
packages (OpenFeature's web SDK and OFREP web provider, and this repository's
``clients/js``) and served on localhost by a small Node server, which forwards
OFREP and ``POST /v1/events`` to the daemon so the page calls its own origin.
Debian's ``chromium``, driven by Playwright, opens it. The page evaluates two
flags through the web provider for one unit after another, serves each arm,
and reports exposures (the package's hook) and request outcomes
(``measure``) through the HTTP intake; the treatment of one flag fails in the
page. The healthy flag's rollout advances on those events to completion, the
faulty one is rolled back, and then the page serves its control.

    python -m pytest -s tests/scenarios/test_browser_app.py   # prints how long each took
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, Page

from controller.core.plan import Guardrail, Plan, Stage
from tests.reading import read_to_end
from tests.scenarios.harness import Scenario
from tests.services import free_port
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEALTHY, FAULTY = "web.checkout", "web.search"
PERCENTS = (20, 50, 100)


def web_plan() -> Plan:
    """Three short stages, each long enough for the error rate to be tested in both arms.

    A stage lasts 8 s and needs 30 units per arm; the error rate is tested
    once each arm has 60 requests, which the page sends at 20% within a few
    seconds, so a faulty treatment is caught before its first stage ends.
    """
    return Plan(
        stages=[
            Stage(
                percent=p,
                min_duration=timedelta(seconds=0 if p == 100 else 8),
                min_units_per_arm=0 if p == 100 else 30,
            )
            for p in PERCENTS
        ],
        guardrails=[Guardrail(metric="error_rate")],
        min_metric_events=60,
        alpha=0.01,
    )


@pytest.fixture
async def page_server(js_client: Path, node: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Start the page's Node server for a controller: ``await page_server(controller_url)``."""
    dist = tmp_path / "dist"
    built = await asyncio.to_thread(
        subprocess.run,
        [node, "examples/web/build.mjs", str(dist)],
        cwd=js_client,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    processes: list[asyncio.subprocess.Process] = []

    async def start(controller: str) -> str:
        process = await asyncio.create_subprocess_exec(
            node,
            "examples/web/serve.mjs",
            str(dist),
            controller,
            cwd=js_client,
            stdout=asyncio.subprocess.PIPE,
        )
        processes.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"http://"), line
        return line.decode().strip()

    try:
        yield start
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def test_a_browser_app_advances_a_healthy_rollout_and_rolls_back_a_faulty_one(
    chromium: str, js_client: Path, scenario: Scenario, browser: Browser, page_server: Any
) -> None:
    # Given the daemon serving OFREP and the intake, and both flags rolling out
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
    scenario.start_daemon()
    for flag in (HEALTHY, FAULTY):
        await scenario.start(flag, web_plan())
    await scenario.until(
        lambda: {s["flag"] for s in scenario.observed.flag_states} >= {HEALTHY, FAULTY},
        timeout=30,
        what="both flags rolling out",
    )

    # When the page, served on localhost, visits units in Chromium
    site = await page_server(f"http://127.0.0.1:{port}")
    errors: list[str] = []
    context = await browser.new_context()
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    await page.goto(f"{site}?flags={HEALTHY},{FAULTY}&faulty={FAULTY}&units=4000&requests=5")
    opened = time.monotonic()

    # Then the faulty flag is rolled back on the page's events, and the page serves control
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag=FAULTY, action="rollback"),
        timeout=120,
        what="the faulty flag's rollback",
    )
    rolled_back = time.monotonic() - opened
    assert rollback["stage"] == 0
    assert "error rate" in rollback["reason"]
    assert "regressed" in rollback["reason"]
    last = await eventually(
        lambda: _serving(page, FAULTY, "DISABLED"), timeout=30, what="the page serving control"
    )
    assert last["variant"] == "control"

    # And the healthy flag went through every stage to completion
    done = await scenario.until(
        lambda: scenario.observed.decision_where(flag=HEALTHY, action="complete"),
        timeout=180,
        what="the healthy flag's completion",
    )
    completed = time.monotonic() - opened
    assert done["phase_after"] == "completed"
    advanced = [
        d["stage"]
        for d in scenario.observed.decisions
        if d["flag"] == HEALTHY and d["action"] == "advance"
    ]
    assert advanced == [1, 2]
    assert scenario.observed.decision_where(flag=HEALTHY, action="rollback") is None

    # And every event the page sent was accepted once, nothing dropped or refused
    stopped: dict[str, Any] = await page.evaluate("shop.stop()")
    await context.close()
    assert not errors, errors
    counters = stopped["events"]
    assert counters["sent"] > 0
    assert {k: counters[k] for k in ("dropped", "rejected", "invalid", "pending")} == dict.fromkeys(
        ("dropped", "rejected", "invalid", "pending"), 0
    )
    records = await read_to_end(scenario.bootstrap, scenario.topics["events"])
    events = [orjson.loads(r.value) for r in records]
    assert len(events) == len({e["id"] for e in events}) == counters["sent"]
    kinds = Counter((e["flag"], e["type"]) for e in events)
    assert kinds[FAULTY, "exposure"] > 0
    assert kinds[HEALTHY, "request"] > 0
    failed = Counter(e["arm"] for e in events if e["flag"] == FAULTY and e.get("error"))
    assert failed["treatment"] > failed["control"]
    print(
        f"\nthe page: {stopped['visits']} visits, {counters['sent']} events sent; "
        f"rolled back after {rolled_back:.1f} s, completed after {completed:.1f} s"
    )


async def _serving(page: Page, flag: str, reason: str) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate("shop.stats()")
    last: dict[str, Any] = stats["last"].get(flag, {})
    assert last.get("reason") == reason, stats
    return last
