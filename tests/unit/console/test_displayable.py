"""Untrusted text on every surface a person reads: no control, escape or bidi characters.

A right-to-left override (U+202E) makes ``txt.exe`` read as ``exe.txt``; an
escape sequence recolours or rewrites a terminal; both come from outside (flag
names, reasons, the model's rationale). One sanitiser in the core replaces
them, where the model's reply is parsed and wherever text is rendered.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.console import pages
from controller.console.charts import Mark, guardrail_chart
from controller.console.rollout import RolloutPage, rollout_detail
from controller.core.common.text import UNSAFE, displayable
from controller.core.reading.narrative import accepted
from controller.core.reading.views import describe
from controller.core.rollouts.advice import Opinion, Unavailable, parse_advice
from controller.core.wire import RolloutEvidence
from controller.core.wire.messages import Alert, Decision
from controller.ctl.looking import views
from controller.ctl.report.render import html_page, markdown
from controller.ctl.report.report import from_served
from controller.integrations.slack import slack_payload
from tests.unit.console.test_console_render import EMPTY, at_stage, rising, row_of
from tests.unit.core.machine.gate.test_gate import EARLY, rollout
from tests.unit.ctl.report.test_report import ADVANCE, NOW, ROLLBACK, START, STATUS
from tests.unit.ctl.test_forwarding import _alert, _strings
from tests.unit.ctl.test_views import rollout as status_row

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
CONTROL = "\x1b\x07\x00\r\x7f\x85\x9b\u2028\u2029"
HOSTILE = f"safe{BIDI}txt{CONTROL}[K.exe"  # ESC [ K: erase the line
CHARS = set(BIDI + CONTROL)


def unsafe_in(text: str) -> set[str]:
    return {c for c in text if c in CHARS}


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("plain text, with ünïcödé and emoji 🚀", "plain text, with ünïcödé and emoji 🚀"),
        ("two\nlines\tand a tab", "two\nlines\tand a tab"),
        ("exe.\u202etxt", "exe.\ufffdtxt"),
        ("\u2066isolated\u2069", "\ufffdisolated\ufffd"),
        ("mark\u200e\u200f\u061c", "mark\ufffd\ufffd\ufffd"),
        ("\x1b[2J\x1b[31mred", "\ufffd[2J\ufffd[31mred"),
        ("over\rwrite", "over\ufffdwrite"),
        ("nul\x00 del\x7f c1\x9b", "nul\ufffd del\ufffd c1\ufffd"),
        ("line\u2028para\u2029", "line\ufffdpara\ufffd"),
        ("", ""),
    ],
)
def test_displayable_replaces_what_could_rewrite_or_reorder_the_text(
    given: str, shown: str
) -> None:
    assert displayable(given) == shown
    assert displayable(shown) == shown
    assert not UNSAFE.search(shown)


def test_the_models_rationale_is_stored_without_them() -> None:
    reply = '{"action": "hold", "confidence": 0.5, "rationale": "ok \\u202e\\u001b[31m hold"}'
    advice = parse_advice(reply)
    assert not isinstance(advice, str)
    assert advice.rationale == "ok \ufffd\ufffd[31m hold"
    opinion = Opinion(advice=advice, model=f"m{BIDI}", latency_ms=1.0)
    assert not unsafe_in(str(opinion.evidence()))
    assert not unsafe_in(Unavailable(cause=HOSTILE).cause)


def test_a_models_narrative_is_kept_without_them() -> None:
    text, why = accepted({"narrative": f"The rollout {HOSTILE} went well."}, [])
    assert text is not None, why
    assert not unsafe_in(text)


def test_the_console_shows_none_of_them() -> None:
    row = row_of("attention", flag=HOSTILE).model_copy(update={"health_reason": HOSTILE})
    alert = Alert.model_validate(
        {"v": 1, "id": "a", "type": "alert", "ts": "2026-11-22T12:00:00Z", "flag": "f",
         "severity": "critical", "kind": "rollback", "summary": HOSTILE}
    )  # fmt: skip
    listed = pages.rollout_list([row], [alert])
    chart = guardrail_chart(rising(), 0.0, metric=HOSTILE, stages=[Mark(1000, HOSTILE)])
    advice = {"status": "ok", "action": "advance", "confidence": 0.9, "latency_ms": 5,
              "model": HOSTILE, "rationale": HOSTILE}  # fmt: skip
    decision = {"type": "decision", "ts": "2026-11-22T12:00:00Z", "action": "pause",
                "stage": 2, "reason": HOSTILE, "v": 1, "id": "d1", "flag": "f",
                "kind": "command", "outcome": "applied",
                "evidence": {"advisor": advice, "at_stage": at_stage(2, 5, 25.0)}}  # fmt: skip
    status = describe(rollout(), None, EARLY)
    detail = rollout_detail(RolloutPage(status, EMPTY, [Decision.model_validate(decision)]))
    for html in (listed, chart, detail, pages.message_page(HOSTILE, HOSTILE)):
        assert "safe" in html
        assert not unsafe_in(html), html


def test_reports_show_none_of_them() -> None:
    hostile = {**ROLLBACK, "reason": HOSTILE, "evidence": {
        **ROLLBACK["evidence"], "advisor": {"status": "ok", "action": "advance",
                                            "rationale": HOSTILE, "latency_ms": 10}}}  # fmt: skip
    report = from_served({**STATUS, "plan": HOSTILE}, [START, ADVANCE, hostile], None, NOW)
    for text in (html_page(report), markdown(report)):
        assert "safe" in text
        assert not unsafe_in(text)


def test_the_cli_shows_none_of_them() -> None:
    # Built without validation: a flag key's pattern refuses these characters on the topic,
    # and the lines must not rely on that.
    decision = Decision.model_construct(
        type="decision", v=1, id="d1", flag=HOSTILE, ts=datetime(2026, 11, 22, 12, tzinfo=UTC),
        kind="command", action="pause", outcome="applied", reason=HOSTILE, stage=1,
        phase_before=None, phase_after=None, evidence=RolloutEvidence(),
    )  # fmt: skip
    row = status_row(flag=HOSTILE, plan=HOSTILE, pause_reason=HOSTILE, verdict_reason=HOSTILE)
    shown = [
        views.decision_line(decision),
        views.outcome_line(decision),
        views.status_table([row]),
        views.status_detail(row),
    ]
    for text in shown:
        assert "safe" in text
        assert not unsafe_in(text), text


def test_slack_shows_none_of_them() -> None:
    alert = _alert(flag="checkout", summary=HOSTILE, details={HOSTILE: HOSTILE})
    strings = _strings(slack_payload(alert))
    assert any("safe" in s for s in strings)
    assert not unsafe_in("".join(strings))
