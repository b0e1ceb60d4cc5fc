"""What an operator sees of three rollouts on one daemon, in a real browser, with screenshots.

The daemon, broker and Redis are the scenario's; Debian's ``chromium`` is driven by
Playwright. Three flags roll out at once:

* a healthy flag, 10% → 50% → 100%, whose first stage waits long enough to be watched
  counting down its minimum time and units;
* its twin, on the same plan, whose treatment fails three times as often: rolled back;
* a ring for ``segment("staff")`` at 100%, no concurrent control, gated on the absolute
  limit ``error_rate: 0.05`` with ``limits.require_proof``: it advances only once the
  rate's upper bound is under the limit, then completes through a closing step for
  everyone.

What the browser reads of each page is in :mod:`tests.scenarios.console.page_scripts`.

The screenshots (and the HTML report) are written to ``$TEST_ARTIFACTS_DIR/operator-views``
when that variable is set, else under the test's ``tmp_path``; their paths are printed:

    TEST_ARTIFACTS_DIR=.artifacts .venv/bin/pytest -s \
        tests/scenarios/console/test_operator_views.py -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from playwright.async_api import Browser, Page

from controller.core.reading import limit_reading
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.stats import NO_CONTROL
from controller.core.wire import LimitTest
from controller.core.wire.bucketing import assign
from controller.core.wire.messages import Arm
from tests.scenarios.console.page_scripts import (
    LIMIT_BANDS,
    LIMIT_LAYOUT,
    LIMIT_POINTS,
    LIMITS_SAID,
    NEEDS,
    PLOT_EDGES,
    ROW_HEALTH,
    STAGE_LINES,
    UNDECIDED_OK,
    VERDICT_ENDING,
)
from tests.scenarios.harness import Scenario
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.support.backing.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEALTHY, TWIN, RING = "views.checkout", "views.checkout-twin", "views.staff-ring"
WAIT_S = 40
"""The first stage's minimum time: long enough to watch it count down on a busy machine."""
STAFF = 300
"""The ring flag's units u0 to u299 are staff."""
MIN_UNITS = 800
"""Units per arm the first stage needs: at the healthy flag's traffic, over 30 s at 10%."""
UNSETTLED = r"^error_rate: .*(not shown above, nor yet under|not yet tested)$"
"""A limit's note in the list while it is shown neither above nor under its limit."""
RING_STAGE = "stage 1/2 (100%)"
"""The stage the ring's limit gated: staff for 30 s, before everyone's closing step."""
LIMIT_CHART, DELTA_CHART = (
    'svg.limit-chart[data-limit="error_rate"]',
    'svg.chart[data-metric="error_rate"]',
)


def ladder() -> Plan:
    """10% → 50% → 100%: the first stage waits ``WAIT_S`` and ``MIN_UNITS``, the next a few
    seconds."""
    stages: list[dict[str, Any]] = [
        {"percent": 10, "min_duration": timedelta(seconds=WAIT_S), "min_units_per_arm": MIN_UNITS},
        {"percent": 50, "min_duration": timedelta(seconds=3), "min_units_per_arm": 200},
        {"percent": 100, "min_duration": timedelta(0), "min_units_per_arm": 0},
    ]
    return parse_plan(
        {
            "name": "ladder",
            "stages": stages,
            "guardrails": [{"metric": "error_rate"}],
            "alpha": 0.01,  # peeked continuously: keep a false rollback rare
        }
    )


def staff_ring() -> Plan:
    """Staff first, everyone at 100% (no concurrent control), kept under an absolute limit
    that must be shown met before the ring widens."""
    stages: list[dict[str, Any]] = [
        {
            "percent": 100,
            "audience": 'user_id in segment("staff")',
            "min_duration": timedelta(seconds=30),
            "min_units_per_arm": 0,
        },
        {"percent": 100, "min_duration": timedelta(0), "min_units_per_arm": 0},
    ]
    return parse_plan(
        {
            "name": "staff-ring",
            "stages": stages,
            "guardrails": [{"metric": "error_rate"}],
            "limits": {"error_rate": 0.05, "require_proof": True},
        }
    )


async def ring_app(scenario: Scenario, *, rate: int = 1500, units: int = 4000) -> None:
    """The ring flag's apps: the first ``STAFF`` units are staff, served treatment while the
    ring serves staff only, then everyone is (:func:`ring_arm`); one request in 50 fails,
    well under the limit. ``rate`` requests per second, each with its exposure."""
    rng = random.Random(RING)
    run, tick, i = uuid.uuid4().hex[:12], 0.05, 0
    while True:
        state = scenario.state(RING)
        if state is None or state["status"] not in ("rolling_out", "completed"):
            await asyncio.sleep(tick)
            continue
        for _ in range(int(rate * tick)):
            n = rng.randrange(units)
            unit = f"u{n}"
            arm = ring_arm(state, n, unit)
            base = {"v": 1, "ts": int(time.time() * 1000), "flag": RING, "unit": unit}
            base |= {"arm": arm.value, "flag_version": state["version"]}
            failed = rng.random() < 0.02
            for body in (
                {"type": "exposure", "id": f"x{run}-{i}"},
                {"type": "request", "id": f"r{run}-{i}", "error": failed, "latency_ms": 20.0},
            ):
                await scenario.send_event(orjson.dumps(base | body), unit=unit)
            i += 1
        await asyncio.sleep(tick)


def ring_arm(state: dict[str, Any], n: int, unit: str) -> Arm:
    """The arm of unit ``n`` as an SDK reading the flag state's rings serves it: staff are in
    the first ring; a ring for everyone (no audience) takes the rest by its threshold."""
    rings: list[dict[str, Any]] | None = state.get("rings")
    if not rings:
        return assign(RING, state["salt"], unit, state["percent"])
    if n < STAFF:
        return Arm.TREATMENT
    everyone = [r["threshold"] for r in rings if r.get("audience") is None]
    if not everyone:
        return Arm.CONTROL
    return assign(RING, state["salt"], unit, everyone[-1] / 1000)  # 0.001% resolution


def three_times(_state: dict[str, Any], arm: Arm) -> float:
    return 0.06 if arm is Arm.TREATMENT else 0.02


def decided(scenario: Scenario, flag: str, action: str) -> Callable[[], dict[str, Any] | None]:
    """The first decision of ``action`` on ``flag`` observed, once there is one."""
    return lambda: scenario.observed.decision_where(flag=flag, action=action)


def artifacts(tmp_path: Path) -> Path:
    root = os.environ.get("TEST_ARTIFACTS_DIR")
    folder = (Path(root) if root else tmp_path) / "operator-views"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def shot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")


async def no_undecided_ok(page: Page, seen: list[int]) -> None:
    """No guardrail short of "holds" reads "ok" on the page."""
    found: dict[str, Any] = await page.evaluate(UNDECIDED_OK)
    assert found["wrong"] == [], found
    seen.append(found["checked"])


async def wait_for(
    page: Page, script: str, *, timeout_s: float, arg: Any = None, every_ms: float | None = None
) -> Any:
    """The truthy value ``script`` returns on the page, polled through the live updates (at
    each animation frame, or every ``every_ms``)."""
    polling: float | Literal["raf"] = "raf" if every_ms is None else every_ms
    handle = await page.wait_for_function(
        script, arg=arg, timeout=timeout_s * 1000, polling=polling
    )
    return await handle.json_value()


@pytest.mark.timeout(420)
async def test_an_operator_sees_waits_rollbacks_and_limits_as_they_are(
    scenario: Scenario, browser: Browser, tmp_path: Path
) -> None:
    folder = artifacts(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HOST="127.0.0.1",  # the console is served without a token on loopback
        RC_HISTORY__MIN_INTERVAL_SECONDS="0.2",
    )
    scenario.start_daemon()
    # Given the healthy flag's traffic slow enough that its first stage waits for units
    scenario.run_apps(HEALTHY, rate=400, units=20_000)
    scenario.run_apps(TWIN, errors=three_times)
    scenario.run(RING, ring_app(scenario))
    for flag, plan in ((HEALTHY, ladder()), (TWIN, ladder()), (RING, staff_ring())):
        await scenario.start(flag, plan)
    for flag in (HEALTHY, RING):
        await scenario.until(
            decided(scenario, flag, "start"),
            timeout=60,
            what=f"{flag} started",
        )
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    checked: list[int] = []

    # When the operator opens the list while the ring's limit is not yet shown either way
    await page.goto(f"{base}/ui")
    row = await wait_for(page, ROW_HEALTH, timeout_s=60, arg=[RING, UNSETTLED], every_ms=250)
    # Then its row reads a neutral "undecided" with the limit's state, never a green "healthy"
    assert (row["health"], row["word"], row["green"]) == ("health undecided", "undecided", False)
    await shot(page, folder, "0-list-undecided")

    # When the operator opens the healthy flag while its first stage waits
    await page.goto(f"{base}/ui/rollouts/{HEALTHY}")
    # Then the summary lists what the stage still needs: a countdown, and units per arm
    # against the minimum
    needs = await wait_for(page, NEEDS, timeout_s=60)
    said = re.fullmatch(
        r"units per arm: ([\d,]+) of ([\d,]+) \(treatment ([\d,]+), control ([\d,]+)\)",
        needs["units"],
    )
    assert said is not None, needs
    fewest, needed = (int(said[i].replace(",", "")) for i in (1, 2))
    assert needed == MIN_UNITS
    assert fewest < MIN_UNITS
    assert re.fullmatch(r"minimum stage time: (\d+ s|\d+ min( \d+ s)?) left", needs["time"])
    assert scenario.observed.decision_where(flag=HEALTHY, action="advance") is None
    await no_undecided_ok(page, checked)
    await shot(page, folder, "1-waiting-stage")

    # When the ring's page is open while its stage runs
    await page.goto(f"{base}/ui/rollouts/{RING}")
    # Then its limit chart has the treated units' rate drawn
    running = await wait_for(page, LIMIT_POINTS, timeout_s=60)
    assert running["phase"] == "running", running
    assert scenario.observed.decision_where(flag=RING, action="complete") is None
    await no_undecided_ok(page, checked)
    await shot(page, folder, "2-limit-running")

    # When the twin is rolled back
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag=TWIN, action="rollback"),
        timeout=180,
        what="the twin's rollback",
    )
    await page.goto(f"{base}/ui/rollouts/{TWIN}")
    # Then the headline ends with the decision's reason (the page's live updates bring the
    # decision once the controller has it recorded, a moment after it was published)
    verdict = await wait_for(page, VERDICT_ENDING, timeout_s=60, arg=rollback["reason"])
    assert verdict.endswith(rollback["reason"]), verdict
    # and its interval keeps its lower bound above 0, as the gate found it
    interval = re.search(r"error rate \+[\d.]+ pp \[([^,\]]+), ([^\]]+)\]", verdict)
    assert interval is not None, verdict
    assert rollback["evidence"]["guardrails"]["error_rate"]["lower"] > 0
    assert "[0," not in verdict
    assert float(interval[1]) > 0, verdict
    await no_undecided_ok(page, checked)
    await shot(page, folder, "3-rollback")

    # When the ring and the healthy flag complete
    for flag in (RING, HEALTHY):
        await scenario.until(
            decided(scenario, flag, "complete"),
            timeout=240,
            what=f"{flag} completed",
        )
    # Then the ring's limit chart still has its data, and the limit was shown met first
    proven = scenario.observed.decision_where(flag=RING, action="advance")
    assert proven is not None
    test = proven["evidence"]["limits"]["error_rate"]["test"]
    assert test["upper"] < 0.05, test
    await page.goto(f"{base}/ui/rollouts/{RING}")
    after = await wait_for(page, LIMIT_POINTS, timeout_s=30)
    assert after["phase"] == "completed", after
    assert after["points"] >= running["points"]
    assert after["desc"].endswith("shown under it."), after
    # and its value axis is sized to the limit and the rate: the higher of the two at two
    # thirds of the plot (the axis reaches 1.5 times it), never the first seconds' band;
    # its figure on the guardrails' margin, with no blank guardrail chart above it
    layout = await page.evaluate(LIMIT_LAYOUT)
    assert 0.64 < max(layout["limit_height"], layout["rate_height"]) < 0.69, layout
    assert layout["margin"] == layout["guardrail_margin"] == "0px", layout
    assert layout["blank_charts"] == 0, layout
    # and its band and line break at the closing step's start: one run per stage it tested
    bands = await page.evaluate(LIMIT_BANDS)
    assert (bands["bands"], bands["lines"], bands["across"]) == (2, 2, []), bands
    # and its Limits, and the sample-ratio block's comparison, say the ring stage its limit
    # gated, as the advance out of it found it, not the closing step's second after it
    said = await wait_for(page, LIMITS_SAID, timeout_s=30)
    gated = LimitTest.model_validate(proven["evidence"]["limits"]["error_rate"])
    reading = f"at {RING_STAGE}: {limit_reading('error_rate', gated)}"
    assert said["state"] == reading, said
    assert said["compared"] == f"Comparison: {NO_CONTROL}: gated on absolute limits {reading}"
    limit_edges = await page.evaluate(PLOT_EDGES, LIMIT_CHART)
    await no_undecided_ok(page, checked)
    await shot(page, folder, "4-limit-completed")

    # And the healthy flag's Δ chart and per-arm chart put each stage at the same x
    await page.goto(f"{base}/ui/rollouts/{HEALTHY}")
    delta = await page.evaluate(STAGE_LINES, DELTA_CHART)
    arms = await page.evaluate(STAGE_LINES, 'svg.arms-chart[data-metric="error_rate"]')
    assert len(delta) >= 2, delta
    assert delta == arms
    # and the ring's limit chart has the same x-axis as the Δ chart: the same plot's edges
    edges = await page.evaluate(PLOT_EDGES, DELTA_CHART)
    assert all(abs(a - b) <= 1 for a, b in zip(edges, limit_edges, strict=True)), edges
    await no_undecided_ok(page, checked)
    await shot(page, folder, "5-completed")

    # And the list says no undecided guardrail is "ok" either
    await page.goto(f"{base}/ui")
    await page.locator(f'tr[data-flag="{RING}"]').wait_for()
    # and the rolled-back twin's row says why: its guardrail and interval, as the gate did
    twin = await wait_for(
        page, ROW_HEALTH, timeout_s=30, arg=[TWIN, "^rolled back: "], every_ms=500
    )
    assert (twin["health"], twin["note"]) == ("health failed", f"rolled back: {rollback['reason']}")
    assert re.search(r"error rate \+[\d.]+ pp \[[^,\]]+, [^\]]+\]", twin["note"]), twin
    await no_undecided_ok(page, checked)
    await shot(page, folder, "6-list")

    # And rolloutctl status says the ring's limits as the page does
    ctl = Operator(scenario, tmp_path, port)
    status = await ctl("status", RING)
    assert status.code == 0, status.err
    assert (
        f"  comparison: {NO_CONTROL}: gated on absolute limits {reading}" in status.out.splitlines()
    )

    # And the ring's HTML report draws its limit chart with its data, as the console does
    report = folder / "staff-ring-report.html"
    written = await ctl("report", RING, "--html", str(report))
    assert written.code == 0, written.err
    drawn = LimitChart()
    drawn.feed(report.read_text(encoding="utf-8"))
    assert drawn.charts == 1
    assert drawn.points > 0
    assert not drawn.empty
    print(f"report: {report}")
    await page.goto(report.as_uri())
    await no_undecided_ok(page, checked)
    await shot(page, folder, "7-report")
    await context.close()
    assert all(checked), checked  # each page had something to check
    assert errors == []


class LimitChart(HTMLParser):
    """Counts the limit charts of an HTML page and the points drawn in them."""

    def __init__(self) -> None:
        super().__init__()
        self.charts = self.points = 0
        self.empty = False
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        css = dict(attrs).get("class") or ""
        if tag == "svg":
            self._inside = "limit-chart" in css.split()
            self.charts += self._inside
        elif self._inside and tag == "circle" and css == "point":
            self.points += 1
        elif self._inside and tag == "text" and css == "empty":
            self.empty = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._inside = False
