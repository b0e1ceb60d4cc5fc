"""A flag's report across environments: which rollouts, in which order, and how it reads."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from controller.core.reading import PipelineRun
from controller.ctl.app import build_parser
from controller.ctl.looking.diagnosis import retry_after
from controller.ctl.report.environments import (
    ReleaseReport,
    Section,
    html_page,
    markdown,
    sections_of,
)
from controller.ctl.report.render import markdown as single_markdown
from controller.ctl.report.report import from_served
from tests.unit.ctl.report.test_report import ADVANCE, HOSTILE, NOW, START, STATUS, Collector
from tests.unit.ctl.test_pipeline_cli import VIEW

PIPELINE = PipelineRun.model_validate(
    {
        **VIEW,
        "environments": [
            {**step, "key": key}
            for step, key in zip(
                VIEW["environments"], ("checkout@dev", "checkout@staging", "checkout"), strict=True
            )
        ],
    }
)
LISTED = ["search", "checkout", "checkout@staging", "checkout@dev", "checkout@qa", "checkoutx"]
# case: (pipeline, the rollouts listed, --environment, the sections as (environment, key))
CASES: dict[str, tuple[Any, list[str], str | None, list[tuple[str, str]] | None]] = {
    "one environment, no pipeline: the one-rollout report, as ever": (
        None, ["search", "checkout"], None, None),
    "no rollout at all: the one-rollout path says so": (None, ["search"], None, None),
    "no pipeline: the default environment first, then the others by name": (
        None, LISTED, None,
        [("default", "checkout"), ("dev", "checkout@dev"), ("qa", "checkout@qa"),
         ("staging", "checkout@staging")]),
    "a pipeline: its order, then environments outside it": (
        PIPELINE, LISTED, None,
        [("dev", "checkout@dev"), ("staging", "checkout@staging"), ("production", "checkout"),
         ("qa", "checkout@qa")]),
    "a pipeline not started everywhere still names every step": (
        PIPELINE, ["checkout@dev"], None,
        [("dev", "checkout@dev"), ("staging", "checkout@staging"), ("production", "checkout")]),
    "--environment keeps one, by the pipeline's key": (
        PIPELINE, LISTED, "production", [("production", "checkout")]),
    "--environment without a pipeline: the environment's key": (
        None, ["checkout"], "staging", [("staging", "checkout@staging")]),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_which_environments_a_report_covers_in_which_order(case: str) -> None:
    pipeline, listed, only, expected = CASES[case]
    found = sections_of("checkout", pipeline, listed, only)
    assert (None if found is None else [(s.environment, s.key) for s in found]) == expected


def release(plan: str = "default") -> ReleaseReport:
    def built(key: str) -> Any:
        status = {**STATUS, "flag": key, "plan": plan}
        decisions = [{**d, "flag": key} for d in (START, ADVANCE)]
        return from_served(status, decisions, None, NOW)

    return ReleaseReport(
        flag="checkout",
        generated_at=NOW.isoformat(),
        pipeline=PIPELINE,
        sections=[
            Section("dev", "checkout@dev", built("checkout@dev")),
            Section("staging", "checkout@staging", built("checkout@staging")),
            Section("production", "checkout", note="no rollout here: not started"),
        ],
    )


def test_markdown_has_the_pipeline_then_a_section_per_environment_in_order() -> None:
    text = markdown(release())
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings[:4] == [
        "# Release report: checkout",
        "## Pipeline",
        "## Environment dev (checkout@dev)",
        "### Canary report: checkout@dev",
    ]
    sections = [h for h in headings if h.startswith("## Environment")]
    assert sections == [
        "## Environment dev (checkout@dev)",
        "## Environment staging (checkout@staging)",
        "## Environment production (checkout)",
    ]
    assert "#### Stages" in headings
    assert "    next: production waits for: staging to complete (it is running);" in text
    assert "no rollout here: not started" in text
    # each environment's part is its one-rollout report, two levels down
    single = single_markdown(release().sections[0].report)  # type: ignore[arg-type]
    assert re.sub(r"(?m)^#", "###", single).strip() in text


def test_html_is_one_page_a_section_per_environment_every_value_escaped() -> None:
    page = html_page(replace(release(HOSTILE), flag="checkout"))
    parsed = Collector()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert parsed.tags.count("html") == 1
    assert re.findall(r'<section class="environment" data-environment="(\w+)">', page) == [
        "dev",
        "staging",
        "production",
    ]
    assert "<h3>Canary report: checkout@dev</h3>" in page
    assert page.count("<h1>") == 1
    assert HOSTILE in "".join(parsed.text)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), (None, 1.0), ("soon", 1.0), ("-3", 0.0), ("3600", 10.0),
     ("nan", 1.0), ("inf", 1.0)],
)  # fmt: skip
def test_a_429_is_asked_again_after_its_retry_after_bounded(
    header: str | None, seconds: float
) -> None:
    assert retry_after(header) == seconds


def test_environment_is_an_environments_name() -> None:
    parser = build_parser()
    args = parser.parse_args(["report", "checkout", "--environment", "staging"])
    assert (args.flag, args.environment) == ("checkout", "staging")
    for bad in ("Staging", "a@b", "x" * 33, ""):
        with pytest.raises(SystemExit):
            parser.parse_args(["report", "checkout", "--environment", bad])
