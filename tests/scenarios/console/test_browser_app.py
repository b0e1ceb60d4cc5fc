"""A browser app with no Python in it moves one rollout forward and rolls another back.

The page (``clients/js/examples/web``) is bundled with esbuild from npm
packages (OpenFeature's web SDK and OFREP web provider, and this repository's
``clients/js``) and served by a small static Node server on its own origin.
Debian's ``chromium``, driven by Playwright, opens it, and the page calls the
daemon cross-origin as a deployed web app does: the daemon requires app keys,
lists the page's origin in ``http.cors_origins``, and the page sends a client
key made by ``rolloutctl app-key create --client``. The page evaluates two
flags through the web provider for one unit after another, serves each arm,
and reports exposures (the package's hook) and request outcomes
(``measure``) through the HTTP intake; the treatment of one flag fails in the
page. The healthy flag's rollout advances on those events to completion, the
faulty one is rolled back, and then the page serves its control. The same
page with a server key, or on an origin not on the list, is refused.

    python -m pytest -s tests/scenarios/console/test_browser_app.py   # prints how long each took
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

import httpx
import orjson
import pytest
from playwright.async_api import Browser, Page, Response
from prometheus_client.parser import text_string_to_metric_families

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from tests.scenarios.harness import Scenario
from tests.scenarios.operators.test_app_keys import rolloutctl
from tests.support.backing.reading import read_to_end
from tests.support.backing.services import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEALTHY, FAULTY = "web.checkout", "web.search"
PERCENTS = (20, 50, 100)
STATS = "window.shop?.stats() ?? null"  # the page defines shop once its provider started


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
async def page_site(js_client: Path, node: str, tmp_path: Path) -> AsyncIterator[str]:
    """The bundled page served (static files only) on its own origin: its address."""
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
    process = await asyncio.create_subprocess_exec(
        node, "examples/web/serve.mjs", str(dist), cwd=js_client, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"http://"), line
        yield line.decode().strip()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_a_browser_app_advances_a_healthy_rollout_and_rolls_back_a_faulty_one(
    chromium: str, scenario: Scenario, browser: Browser, page_site: str, tmp_path: Path
) -> None:
    # Given the daemon requiring app keys and allowing the page's origin (CORS), both flags
    # rolling out, and a client key and a server key made by signed rolloutctl commands
    origin = page_site.rstrip("/")
    port = free_port()
    controller = f"http://127.0.0.1:{port}"
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",
        RC_HTTP__REQUIRE_APP_KEYS="true",
        RC_HTTP__CORS_ORIGINS=f'["{origin}"]',
    )
    scenario.start_daemon()
    for flag in (HEALTHY, FAULTY):
        await scenario.start(flag, web_plan())

    async def create(name: str, *options: str) -> str:
        made = await rolloutctl(scenario, tmp_path, port, "app-key", "create", name, *options)
        assert made.code == 0, made.err
        secret: str = made.json()["secret"]
        return secret

    client_key, server_key = await asyncio.gather(
        create("shop-web", "--client", "--json"),
        create("shop-api", "--scope", "evaluate", "--scope", "events", "--json"),
    )
    assert client_key.startswith("rc_client_")
    await scenario.until(
        lambda: {s["flag"] for s in scenario.observed.flag_states} >= {HEALTHY, FAULTY},
        timeout=30,
        what="both flags rolling out",
    )
    await eventually(
        lambda: _evaluates(controller, client_key), timeout=15, what="the client key in force"
    )

    # When the page, on its own origin, visits units in Chromium with the client key
    def address(site: str, key: str) -> str:
        flags = f"flags={HEALTHY},{FAULTY}&faulty={FAULTY}&units=4000&requests=5"
        return f"{site}?controller={controller}&key={key}&{flags}"

    errors: list[str] = []
    answers: list[tuple[str, int, str | None]] = []

    def answered(response: Response) -> None:
        if response.url.startswith(controller):
            allowed = response.headers.get("access-control-allow-origin")
            answers.append((response.url.removeprefix(controller), response.status, allowed))

    context = await browser.new_context()
    page = await context.new_page()
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("response", answered)

    await page.goto(address(page_site, client_key))
    opened = time.monotonic()
    await eventually(lambda: _started(page), timeout=30, what="the page's provider started")

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
    assert stopped["failed"] is None
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

    # And it was the browser's cross-origin calls with the key: each answer allowed the page's
    # origin (CORS), none was refused, and the daemon refused nothing
    routes = Counter(url.split("?")[0].rsplit("/", 1)[0] for url, _, _ in answers)
    assert routes["/ofrep/v1/evaluate"] > 0, routes
    assert routes["/v1"] > 0, routes
    assert {(status < 400, allowed) for _, status, allowed in answers} == {(True, origin)}
    assert await _refusals(controller) == {}

    # And the same page with the server key, or on an origin not on the list, is refused
    elsewhere = page_site.replace("127.0.0.1", "localhost")  # another origin, same server
    refused = {
        "server key": await _start_failure(browser, address(page_site, server_key)),
        "unlisted origin": await _start_failure(browser, address(elsewhere, client_key)),
    }
    assert refused["server key"]["status"] == 403, refused  # the page read the reason (CORS)
    assert refused["unlisted origin"]["status"] is None, refused  # the browser withheld the answer
    assert set(await _refusals(controller)) == {
        ("evaluate", "server_key_in_browser"),
        ("evaluate", "origin"),
    }
    print(
        f"\nthe page: {stopped['visits']} visits, {counters['sent']} events sent; "
        f"rolled back after {rolled_back:.1f} s, completed after {completed:.1f} s"
    )


async def _evaluates(controller: str, key: str) -> bool:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{controller}/ofrep/v1/evaluate/flags",
            json={"context": {"targetingKey": "probe"}},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert answer.status_code == 200, answer.text
    return True


async def _refusals(controller: str) -> dict[tuple[str, str], float]:
    """``rollout_app_access_refused_total`` by (scope, outcome), the series above zero."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{controller}/metrics")).text
    return {
        (s.labels["scope"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "rollout_app_access_refused"
        for s in family.samples
        if s.name.endswith("_total") and s.value > 0
    }


async def _start_failure(browser: Browser, address: str) -> dict[str, Any]:
    """Why the page at ``address`` could not start its provider (``shop.stats().failed``)."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(address)

        async def failed() -> dict[str, Any]:
            stats: dict[str, Any] | None = await page.evaluate(STATS)
            assert stats is not None, "the page is starting"
            assert stats["failed"] is not None, stats
            assert stats["events"]["sent"] == 0, stats
            return dict(stats["failed"])

        return await eventually(failed, timeout=30, what="the page's provider refused")
    finally:
        await context.close()


async def _started(page: Page) -> bool:
    stats: dict[str, Any] | None = await page.evaluate(STATS)
    assert stats is not None, "the page is starting"
    assert stats["failed"] is None, stats
    assert stats["visits"] > 0, stats
    return True


async def _serving(page: Page, flag: str, reason: str) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate("shop.stats()")
    last: dict[str, Any] = stats["last"].get(flag, {})
    assert last.get("reason") == reason, stats
    return last
