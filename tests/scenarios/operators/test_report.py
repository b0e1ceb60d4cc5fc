"""``rolloutctl report`` on a finished rollout: the real daemon, broker and Redis.

The report's numbers are checked against the decisions the controller
published: each stage shows exactly the evidence of the decision that ended it,
and the HTML report's chart of the guardrail (the console's chart, drawn from
the served gate history) crosses the tolerance at the rollback, at its numbers.
The HTML report is saved under ``$TEST_ARTIFACTS_DIR/report`` (default
``.artifacts/report``) for people to look at.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from controller.core.reading.wording import guardrail_text
from controller.core.wire.messages import Arm
from controller.ctl.report.cells import count
from tests.scenarios.harness import KEY_ID, Scenario, fast_plan
from tests.scenarios.operators.test_rolloutctl import Operator
from tests.support.backing.services import free_port
from tests.support.fake_model import FakeModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "report-flag"
LABELS = ["stage 1/5 (1%)", "stage 2/5 (5%)", "stage 3/5 (25%)"]
SMALL = {"RC_LLM__MODEL": "smollm2-135m-instruct"}
"""The bundled model's name: too small to write a narrative."""
ROOT = Path(__file__).resolve().parents[3]


def ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def artifacts() -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR", ROOT / ".artifacts")) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def failing_from_25(state: dict[str, Any], arm: Arm) -> float:
    return 0.30 if arm is Arm.TREATMENT and state["percent"] >= 25 else 0.02


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.loads += [(name, value) for name, value in attrs if name in ("src", "href")]
        if tag in ("script", "link", "img", "iframe", "object"):
            self.loads.append((tag, None))
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.elements:
            self.elements[-1][2].append(data)

    def drawn(self, tag: str, css: str) -> list[dict[str, str]]:
        """The attributes of every ``tag`` of class ``css`` (an SVG chart's parts)."""
        return [attrs for t, attrs, _ in self.elements if t == tag and attrs.get("class") == css]

    def texts(self, tag: str, css: str) -> list[str]:
        return ["".join(t) for n, a, t in self.elements if n == tag and a.get("class") == css]


async def look_at(browser: Browser, page_file: Path, width: int) -> None:
    """Open the written report in Chromium: it draws its chart, fits the width, loads nothing."""
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: None if r.url == page_file.as_uri() else problems.append(r.url))
    await page.goto(page_file.as_uri())
    box = await page.locator('svg.chart[data-metric="error_rate"]').bounding_box()
    assert box is not None
    assert box["width"] >= min(560, width - 40)
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    await page.screenshot(path=artifacts() / f"report-{width}.png", full_page=True)
    await context.close()
    assert problems == []


async def test_the_report_of_a_rolled_back_rollout_says_what_the_gate_decided(
    scenario: Scenario, tmp_path: Path, browser: Browser
) -> None:
    # Given a rollout whose treatment starts failing at 25%, rolled back by the gate
    port = free_port()
    scenario.configure(RC_HTTP__PORT=str(port))
    scenario.start_daemon()
    scenario.run_apps(FLAG, errors=failing_from_25)
    await scenario.start(FLAG, fast_plan())
    rollback = await scenario.until(
        lambda: scenario.observed.decision_where(flag=FLAG, action="rollback"),
        timeout=120,
        what="the rollback",
    )
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag=FLAG, kind="rollback"),
        timeout=30,
        what="the rollback alert",
    )
    mine = [d for d in scenario.observed.decisions if d["flag"] == FLAG]
    ctl = Operator(scenario, tmp_path, port)

    # When an operator asks for its report, as data
    data = await ctl("report", FLAG, "--json")
    assert data.code == 0, data.err
    report = data.json()

    # Then every stage is there, ended by the decision that ended it, with its evidence
    stages = report["stages"]
    assert [s["label"] for s in stages] == LABELS
    assert [s["outcome"] for s in stages] == ["advance", "advance", "rollback"]
    enders = [d for d in mine if d["action"] in ("advance", "rollback")]
    assert [d["evidence"]["at_stage"]["label"] for d in enders] == LABELS
    for stage, decision in zip(stages, enders, strict=True):
        evidence = decision["evidence"]
        for arm in stage["arms"]:
            counts = {k: v for k, v in arm.items() if k != "name" and not k.startswith("latency")}
            # The report names every arm's named conversions; evidence, only those read
            assert counts == {"named_conversions": {}, **evidence["arms"][arm["name"]]}
            # ...and beside the counts, the arm's latency quantiles as the gate saw them
            quantiles = evidence["latency"][arm["name"]]
            for q in ("p50", "p95", "p99"):
                assert arm[f"latency_{q}_ms"] == quantiles[q]
        (test,) = stage["guardrails"]
        expected = evidence["guardrails"]["error_rate"]
        if isinstance(expected, dict):
            for key in ("delta", "lower", "upper", "tolerance", "p_value"):
                assert test[key] == expected[key], key
        assert stage["srm"]["sequential_p_value"] == evidence["srm"]["sequential_p_value"]
    assert stages[-1]["guardrails"][0]["result"] == "regressed"
    # ...it names the stage as the alert does, and who made each decision
    assert f"rolled back at {LABELS[-1]}:" in alert["summary"]
    decisions = report["decisions"]
    assert [d["action"] for d in decisions] == [d["action"] for d in mine]
    assert decisions[0]["by"] == f"operator tester (key {KEY_ID})"
    assert {d["by"] for d in decisions[1:]} == {"engine (gate statistics)"}
    # ...and its gate history as one series for the guardrail, through the rollback's gate
    (chart,) = report["charts"]
    assert chart["metric"] == "error_rate"
    gates = {p["ts_ms"]: p for p in chart["points"]}
    assert gates[ms(rollback["ts"])]["label"] == LABELS[-1]
    assert not any("history" in note for note in report["notes"])

    # When it is asked for as Markdown and as HTML
    text = await ctl("report", FLAG, "--markdown")
    assert text.code == 0, text.err
    page_file = tmp_path / "report.html"
    written = await ctl("report", FLAG, "--html", str(page_file))
    assert written.code == 0, written.err
    page = Page()
    page.feed(page_file.read_text(encoding="utf-8"))
    shown = "".join(page.text)

    # Then both show the rollback stage's numbers as decided, and the page loads nothing
    arms, test = rollback["evidence"]["arms"], rollback["evidence"]["guardrails"]["error_rate"]
    markdown = text.out.replace("\\", "")  # as read, without Markdown's escapes
    for expected in (
        LABELS[-1],
        count(arms["treatment"]["units"]),
        count(arms["control"]["errors"]),
        # Δ in percentage points with its interval and the lift on control, as everywhere
        guardrail_text("error_rate", test, arms).removeprefix("error rate "),
    ):
        assert expected in markdown, expected
        assert expected in shown, expected
    # ...and both open with the verdict, the rollback's reason in the same convention
    verdict = f"Rolled back at {LABELS[-1]}: {rollback['reason']}"
    assert rollback["reason"].startswith("error rate +"), rollback["reason"]
    assert markdown.splitlines()[2] == f"**{verdict}**"
    assert shown.index(verdict) < shown.index("Stages")
    assert page.loads == []
    print(text.out)  # the report, for whoever reads the test log

    # And the HTML draws the guardrail as the console does: the bound crosses the tolerance
    # at the rollback's time, at the numbers the rollback decided on
    rolled_back_at = ms(rollback["ts"])
    (crossing,) = page.drawn("circle", "crossing")
    assert int(crossing["data-ts"]) == rolled_back_at
    assert float(crossing["data-value"]) == pytest.approx(test["lower"], rel=1e-4)
    (tolerance,) = page.drawn("line", "tolerance")
    assert float(tolerance["data-value"]) == test["tolerance"]
    assert float(crossing["cy"]) < float(tolerance["y1"])  # drawn beyond it
    (at_rollback,) = [
        p for p in page.drawn("circle", "point") if p["data-ts"] == crossing["data-ts"]
    ]
    assert float(at_rollback["data-upper"]) == pytest.approx(test["upper"], rel=1e-4)
    assert str(rolled_back_at) in [m["data-ts"] for m in page.drawn("line", "decision")]
    assert page.texts("text", "stage-label") == LABELS[1:]  # the stages named as everywhere
    # ...and beside it each arm's own error rate, labelled in %
    assert [a["class"] for a in page.drawn("polyline", "arm treatment")] == ["arm treatment"]
    assert len(page.drawn("polyline", "arm control")) == 1
    treatment_label = page.texts("text", "arm-label treatment")
    assert len(treatment_label) == 1
    assert treatment_label[0].startswith("treatment ")
    assert treatment_label[0].endswith("%")
    when = datetime.fromisoformat(rollback["ts"].replace("Z", "+00:00")).strftime("%H:%M:%S")
    said = f"The interval crossed the tolerance at {when} in {LABELS[-1]}."
    assert said in shown
    assert said in markdown  # the Markdown report says it in words
    shutil.copy(page_file, artifacts() / "report.html")
    # ...which a browser shows at both widths, asking for nothing else
    for width in (1280, 390):
        await look_at(browser, page_file, width)

    # When the model is asked for a narrative: kept when its numbers are true, else dropped
    async with FakeModel() as model:
        # "fake" states no size and the fake server lists none: the model is asked
        asked = {"RC_LLM__BASE_URL": model.base_url, "RC_LLM__MODEL": "fake"}
        model.behaviour = "narrative_rollback_25"
        told = await ctl("report", FLAG, "--markdown", "--narrative", env=asked)
        assert told.code == 0, told.err
        assert "## In short\n\nIt was rolled back at stage 3/5 (25%)." in told.out
        model.behaviour = "narrative_invented"
        dropped = (await ctl("report", FLAG, "--json", "--narrative", env=asked)).json()
        # ...and a model too small to write one (the bundled one's name) is not asked
        asks = len(model.requests)
        small = await ctl("report", FLAG, "--markdown", "--narrative", env=asked | SMALL)
        assert small.code == 0, small.err
        assert "## In short" not in small.out
        assert "rolloutctl: no narrative: the model smollm2-135m-instruct is too small" in small.err
        assert len(model.requests) == asks
    assert dropped["narrative"] is None
    assert any("no narrative: it held numbers that are not in" in n for n in dropped["notes"])
