"""What both forms of a canary report show: its numbers in words, and its tables' cells.

Pure functions of :class:`controller.ctl.report.model.Report`, shared by the
Markdown and the HTML renderings (:mod:`controller.ctl.report.render`), so
the two say the same thing in the same words; each escapes the cells for
its own form.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime

from controller.console.figures import Figure
from controller.core.common import clock_text
from controller.core.reading import (
    NAMED_CONVERSIONS,
    amount_text,
    control_rate,
    harm_edge,
    limit_text,
    ms_text,
    quantity_text,
    rate_interval,
    srm_word,
)
from controller.ctl.report.model import (
    Arm,
    GuardrailResult,
    Report,
    SampleRatio,
    StageReport,
)

TABLE_ROWS = 200
"""The most gates listed under a chart (the latest): a history keeps about that many a stage."""
CHART_KEY = (
    "Each chart is one guardrail over the whole rollout: delta (treatment minus control) as a"
    " line, its always-valid bound as a band, the tolerance dashed, the start of each stage and"
    " each decision as dotted lines, and the first gate whose bound lay wholly beyond the"
    " tolerance ringed."
)

LIMIT_KEY = (
    "A stage serving all of its audience has no control: each limit's chart is the treated"
    " units' rate over the whole rollout as a line, its always-valid bound as a band and the"
    " limit dashed. Not breached is not shown above: only the band's top at or below the limit"
    " shows the rate kept."
)
LIMIT_HEAD = ["limit", "stage", "rate [anytime-valid interval]", "at most", "reads"]


def limit_cells(figure: Figure) -> list[list[str]]:
    """Each stage's last test of a limit figure's limit: where the stage left it."""
    last = {p.stage: p for p in figure.points}
    rows = []
    for point in last.values():
        interval, edge = rate_interval(point.delta, point.lower, point.upper, figure.tolerance)
        if point.lower > figure.tolerance:
            reads = "breached"
        elif point.upper <= figure.tolerance:
            reads = "shown under"
        else:
            reads = "not shown above, nor yet under"
        rows.append([figure.metric, point.stage_name, interval, edge, reads])
    return rows


# -- numbers and words, shared -------------------------------------------------------------


def number(value: float | None) -> str:
    """A measured value, four significant digits: ``0.0204``, ``-inf``; ``-`` when absent."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def duration(seconds: float | None) -> str:
    """``1h02m``, ``3m04s``, ``12.5s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def srm_text(srm: SampleRatio | None) -> str:
    if srm is None:
        return "-"
    said = srm_word(
        srm.flagged, srm.observed_treatment, srm.observed_control, srm.expected_treatment
    )
    verdict = said.upper() if srm.flagged else said  # "no units yet" on 0 against 0
    return (
        f"{number(srm.observed_treatment)} treatment units against "
        f"{number(srm.expected_treatment)} expected, sequential p "
        f"{number(srm.sequential_p_value)} ({verdict})"
    )


def arm_cells(arm: Arm) -> list[str]:
    return [
        arm.name,
        count(arm.units),
        count(arm.exposures),
        count(arm.requests),
        count(arm.errors),
        count(arm.conversions),
        *(_ms(q) for q in (arm.latency_p50_ms, arm.latency_p95_ms, arm.latency_p99_ms)),
    ]


def _ms(value: float | None) -> str:
    """A latency in a column headed in ms: ``21.0``, ``1,204``; ``-`` when there is none."""
    return ms_text(value).removesuffix(" ms")


def guardrail_cells(test: GuardrailResult, stage: StageReport) -> list[str]:
    """A guardrail's row: its state, Δ and its interval in the metric's unit as every text
    writes them, and the tolerance in the same digits."""
    edge = harm_edge(test.tolerance, test.direction)
    if test.delta is None:
        shown, limit = "-", "-" if edge is None else amount_text(test.metric, edge)
    else:
        low = -math.inf if test.lower is None else test.lower
        high = math.inf if test.upper is None else test.upper
        shown = quantity_text(
            test.metric, test.delta, low, high, _baseline(test, stage), named=False, limit=edge
        )
        limit = "-" if edge is None else limit_text(test.metric, edge, test.delta, low, high)
    return [test.metric, test.said(), shown, limit, number(test.p_value)]


def widening_notes(stage: StageReport) -> list[str]:
    """Below the guardrails' table, why each interval is as wide as it is, where there is a
    word to say: ``error_rate: units that send many requests or fail together …``."""
    return [f"{g.metric}: {g.widening}" for g in stage.guardrails if g.widening]


def _baseline(test: GuardrailResult, stage: StageReport) -> float | None:
    """The control's rate in the stage, for a rate's relative lift."""
    arms = {a.name: _counts(a) for a in stage.arms}
    return control_rate(test.metric, arms)


def _counts(arm: Arm) -> dict[str, object]:
    """An arm's counts by the names a decision's evidence uses."""
    return {
        "units": arm.units,
        "exposures": arm.exposures,
        "requests": arm.requests,
        "errors": arm.errors,
        "conversions": arm.conversions,
        NAMED_CONVERSIONS: arm.named_conversions,
    }


ARM_HEAD = [
    "arm",
    "units",
    "exposures",
    "requests",
    "errors",
    "conversions",
    "latency p50 (ms)",
    "p95 (ms)",
    "p99 (ms)",
]
GUARDRAIL_HEAD = [
    "guardrail",
    "result",
    "Δ treatment - control [anytime-valid interval]",
    "tolerance",
    "p",
]
DECISION_HEAD = ["time", "at", "action", "outcome", "by", "reason", "advisor"]
STAGE_HEAD = ["stage", "started", "ended", "duration", "ended by"]
WAIT_HEAD = ["at", "from", "until", "why"]
TRIGGER_HEAD = ["time", "at", "trigger", "action", "policy entry", "outcome", "reason"]


def held_back(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """The windows waited and the triggers fired, as titled tables; none when there were none."""
    tables = []
    if report.waits:
        rows = [
            [
                w.stage,
                clock_text(w.since),
                clock_text(w.until) if w.until else "still waiting",
                w.reason,
            ]
            for w in report.waits
        ]
        tables.append(("Windows waited", WAIT_HEAD, rows))
    if report.triggers:
        rows = [
            [clock_text(t.ts), t.stage, t.trigger, t.action, t.entry, t.outcome, t.reason]
            for t in report.triggers
        ]
        tables.append(("Triggers fired", TRIGGER_HEAD, rows))
    return tables


def decision_cells(report: Report) -> Iterator[list[str]]:
    for row in report.decisions:
        advice = row.advisor or "-"
        yield [clock_text(row.ts), row.stage, row.action, row.outcome, row.by, row.reason, advice]


def stage_span(stage: StageReport) -> str:
    """A stage's start, end and duration in one line: ``2026-11-22 10:00:00 UTC to
    2026-11-22 10:04:05 UTC, 4m05s``; a running stage's duration is so far."""
    end = "now" if stage.outcome == "running" else clock_text(stage.ended_at)
    return f"{clock_text(stage.started_at)} to {end}, {duration(stage.duration_s)}"


def stage_cells(stage: StageReport) -> list[str]:
    ended = "running" if stage.outcome == "running" else clock_text(stage.ended_at)
    return [
        stage.label,
        clock_text(stage.started_at),
        ended,
        duration(stage.duration_s),
        stage.outcome,
    ]


def ended_rows(report: Report) -> list[tuple[str, str]]:
    """When the rollout ended and how long it ran, from its last stage's end; none while it
    runs."""
    last = report.stages[-1] if report.stages else None
    if last is None or last.outcome == "running" or last.ended_at is None:
        return []
    try:
        ran = datetime.fromisoformat(last.ended_at) - datetime.fromisoformat(
            report.started_at or ""
        )
    except (ValueError, TypeError):  # an unreadable or zone-less start: no duration to say
        return [("ended", clock_text(last.ended_at))]
    seconds = ran.total_seconds()
    said = duration(seconds) if seconds >= 0 else "-"
    return [("ended", clock_text(last.ended_at)), ("duration", said)]


def summary_rows(report: Report) -> list[tuple[str, str]]:
    served = "-" if report.percent is None else f"{report.percent:g}%"
    return [
        ("flag", report.flag),
        ("rollout", report.rollout_id),
        ("plan", report.plan),
        ("phase", report.phase),
        ("serving", served),
        ("started", clock_text(report.started_at)),
        *ended_rows(report),
        ("report made", clock_text(report.generated_at)),
    ]
