"""When each stage and each rollout began and ended, and for how long: in the console's list,
on a rollout's page and in the report, never ``-`` where the data says it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controller.console import pages
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.reading import rollout_span, stage_spans
from controller.core.reading.served_history import RolloutHistory
from controller.core.reading.views import RolloutRow, RolloutView
from controller.ctl.report.render import html_page, markdown
from controller.ctl.report.report import from_served
from tests.unit.ctl.report.test_report import ADVANCE, NOW, ROLLBACK, START, STATUS

ENDED = STATUS | {
    "started_at": "2026-11-22T10:00:00+00:00", "stage_started_at": "2026-11-22T10:00:30+00:00",
    "ended_at": "2026-11-22T10:01:40+00:00", "time_in_stage_s": 70.0,
}  # fmt: skip
RUNNING = ENDED | {"phase": "running", "ended_at": None, "time_in_stage_s": 200.0}
HISTORY = RolloutHistory.model_validate(
    {
        "flag": "checkout",
        "rollout_id": "r1",
        "stages": [
            {
                "stage": 0,
                "percent": 1.0,
                "points": [
                    {
                        "ts_ms": 1_795_341_610_000,
                        "ts": "",
                        "stage": 0,
                        "percent": 1.0,
                        "verdict": "hold",
                        "srm_p": 1.0,
                        "arms": {},
                        "guardrails": {},
                    },
                ],
            }
        ],
    }
)


def row(status: dict[str, Any], active: bool) -> RolloutRow:
    return RolloutRow.model_validate(status | {"active": active, "health": "", "health_reason": ""})


def cells(listed: str) -> dict[str, str]:
    return dict(re.findall(r'<td data-label="([^"]+)"[^>]*>([^<]*)</td>', listed))


@pytest.mark.parametrize(
    ("status", "active", "said"),
    [
        (ENDED, False, {"in stage": "70 s", "ended": "10:01:40", "total": "100 s"}),
        (RUNNING, True, {"in stage": "3 min", "ended": "running", "total": "3 min"}),
        (ENDED | {"ended_at": None}, False, {"in stage": "70 s", "ended": "-", "total": "-"}),
    ],
    ids=["ended", "running", "ended-before-kept"],
)
def test_the_list_says_when_each_rollout_ended_and_how_long_it_ran(
    status: dict[str, Any], active: bool, said: dict[str, str]
) -> None:
    listed = cells(pages.rollout_list([row(status, active)], []))
    assert {k: listed[k] for k in said} == said


def test_a_rollouts_span_is_to_its_end_or_so_far() -> None:
    ended = rollout_span(RolloutView.model_validate(ENDED))
    assert (ended.seconds, ended.end is not None) == (100.0, True)
    running = RolloutView.model_validate(RUNNING)
    assert (rollout_span(running).seconds, rollout_span(running).end) == (230.0, None)
    page = rollout_detail(RolloutPage(running, HISTORY))
    assert '<dd class="ran">started 10:00:00, 3 min so far</dd>' in page  # 30 s, then 200 s


def test_each_stage_has_its_start_end_and_duration_on_the_page() -> None:
    status = RolloutView.model_validate(ENDED)
    spans = stage_spans(status, HISTORY)
    assert [(i, s.seconds) for i, s in spans.items()] == [(0, 30.0), (1, 70.0)]
    page = rollout_detail(RolloutPage(status, HISTORY, stages=[1.0, 5.0, 25.0, 50.0, 100.0]))
    items = re.findall(r"<li class=\"(\w+)\"[^>]*>(.*?)</li>", page)
    first, failed = items[0][1], items[1][1]
    assert "started</small> <time>10:00:00</time>" in first
    assert '<time class="end">10:00:30</time>' in first
    assert "30 s in all" in first
    assert '<time class="end">10:01:40</time>' in failed
    assert "70 s in all" in failed
    assert '<dd class="ran">started 10:00:00, ended 10:01:40, 100 s in all</dd>' in page
    assert "<dt>time in stage</dt><dd>70 s</dd>" in page


def test_the_report_says_each_stages_end_and_the_rollouts_end_and_duration() -> None:
    report = from_served(ENDED, [START, ADVANCE, ROLLBACK], None, NOW)
    text, html = markdown(report), html_page(report)
    assert "- **ended**: 2026-11-22 10:01:40 UTC\n- **duration**: 1m40s" in text
    stage_rows = [line for line in text.splitlines() if line.startswith("| stage 1/5")]
    assert stage_rows, text
    assert "| 2026-11-22 10:00:30 UTC | 30.0s |" in stage_rows[0]  # the first stage's end
    assert "<td>2026-11-22 10:01:40 UTC</td>" in html
    assert "2026-11-22 10:00:00 UTC to 2026-11-22 10:00:30 UTC" in text
