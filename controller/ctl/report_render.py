"""A canary report as Markdown or as one self-contained HTML page.

Pure functions of :class:`controller.ctl.report_model.Report`. The HTML page has its
CSS inline and loads nothing (no script, font, image or stylesheet from
anywhere), so it can be mailed or attached to a ticket and opened offline;
every value is escaped, since flags, reasons, actors and the model's words
come from outside. Markdown escapes the same values so none can form a link,
an image or a table cell of its own.

Charts: each guardrail's gate history over the whole rollout is drawn as the
console draws it (:class:`controller.console.figures.Figure`: inline SVG, Δ
with its always-valid bound, the tolerance, the crossing, stage starts and
decisions), with its description in words and its numbers as a table; the
Markdown report gives the description.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from controller.console.figures import Figure
from controller.core.text import displayable, html_text
from controller.core.wording import amount_text, control_rate, quantity_text
from controller.ctl.report_model import (
    Arm,
    GuardrailResult,
    Report,
    SampleRatio,
    StageReport,
    clock,
)

TABLE_ROWS = 200
"""The most gates listed under a chart (the latest): a history keeps about that many a stage."""
CHART_KEY = (
    "Each chart is one guardrail over the whole rollout: delta (treatment minus control) as a"
    " line, its always-valid bound as a band, the tolerance dashed, the start of each stage and"
    " each decision as dotted lines, and the first gate whose bound lay wholly beyond the"
    " tolerance ringed."
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|~])")


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


def _srm_text(srm: SampleRatio | None) -> str:
    if srm is None:
        return "-"
    verdict = "MISMATCH" if srm.flagged else "ok"
    return (
        f"{number(srm.observed_treatment)} treatment units against "
        f"{number(srm.expected_treatment)} expected, sequential p "
        f"{number(srm.sequential_p_value)} ({verdict})"
    )


def _arm_cells(arm: Arm) -> list[str]:
    return [
        arm.name,
        count(arm.units),
        count(arm.exposures),
        count(arm.requests),
        count(arm.errors),
        count(arm.conversions),
    ]


def _guardrail_cells(test: GuardrailResult, stage: StageReport) -> list[str]:
    """A guardrail's row: Δ and its interval in the metric's unit, as every text writes them."""
    if test.delta is None:
        shown = "-"
    else:
        low = -math.inf if test.lower is None else test.lower
        high = math.inf if test.upper is None else test.upper
        shown = quantity_text(
            test.metric, test.delta, low, high, _baseline(test, stage), named=False
        )
    limit = "-" if test.tolerance is None else amount_text(test.metric, test.tolerance)
    return [test.metric, test.result, shown, limit, number(test.p_value)]


def _baseline(test: GuardrailResult, stage: StageReport) -> float | None:
    """The control's rate in the stage, for a rate's relative lift."""
    arms = {a.name: _counts(a) for a in stage.arms}
    return control_rate(test.metric, arms)


def _counts(arm: Arm) -> dict[str, int | None]:
    """An arm's counts by the names a decision's evidence uses."""
    return {
        "units": arm.units,
        "exposures": arm.exposures,
        "requests": arm.requests,
        "errors": arm.errors,
        "conversions": arm.conversions,
    }


ARM_HEAD = ["arm", "units", "exposures", "requests", "errors", "conversions"]
GUARDRAIL_HEAD = [
    "guardrail",
    "result",
    "Δ treatment - control [anytime-valid interval]",
    "tolerance",
    "p",
]
DECISION_HEAD = ["time", "at", "action", "outcome", "by", "reason", "advisor"]
STAGE_HEAD = ["stage", "started", "duration", "ended by"]
WAIT_HEAD = ["at", "from", "until", "why"]
TRIGGER_HEAD = ["time", "at", "trigger", "action", "policy entry", "outcome", "reason"]


def _held_back(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """The windows waited and the triggers fired, as titled tables; none when there were none."""
    tables = []
    if report.waits:
        rows = [
            [w.stage, clock(w.since), clock(w.until) if w.until else "still waiting", w.reason]
            for w in report.waits
        ]
        tables.append(("Windows waited", WAIT_HEAD, rows))
    if report.triggers:
        rows = [
            [clock(t.ts), t.stage, t.trigger, t.action, t.entry, t.outcome, t.reason]
            for t in report.triggers
        ]
        tables.append(("Triggers fired", TRIGGER_HEAD, rows))
    return tables


def _decision_cells(report: Report) -> Iterator[list[str]]:
    for row in report.decisions:
        advice = row.advisor or "-"
        yield [clock(row.ts), row.stage, row.action, row.outcome, row.by, row.reason, advice]


def _stage_cells(stage: StageReport) -> list[str]:
    return [stage.label, clock(stage.started_at), duration(stage.duration_s), stage.outcome]


def _summary(report: Report) -> list[tuple[str, str]]:
    served = "-" if report.percent is None else f"{report.percent:g}%"
    return [
        ("flag", report.flag),
        ("rollout", report.rollout_id),
        ("plan", report.plan),
        ("phase", report.phase),
        ("serving", served),
        ("started", clock(report.started_at)),
        ("report made", clock(report.generated_at)),
    ]


# -- Markdown ------------------------------------------------------------------------------


def markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown."""
    out = [f"# Canary report: {_md(report.flag)}", ""]
    out += [f"**{_md(report.verdict)}**", ""] if report.verdict else []
    out += [f"- **{name}**: {_md(value)}" for name, value in _summary(report)]
    out += [""] + [f"> {_md(note)}" for note in report.notes]
    if report.narrative:
        out += ["", "## In short", "", _md(report.narrative), "", f"_{_md(_byline(report))}_"]
    out += ["", "## Stages", "", *_md_table(STAGE_HEAD, [_stage_cells(s) for s in report.stages])]
    for title, head, rows in _held_back(report):
        out += ["", f"## {title}", "", *_md_table(head, rows)]
    for stage in report.stages:
        out += ["", f"### {_md(stage.label)}", ""]
        out += [f"{_md(duration(stage.duration_s))}, ended by {_md(stage.outcome)}."]
        if stage.evidence_from:
            out += [f"Numbers from: {_md(stage.evidence_from)}.", ""]
        if stage.audience:
            out += [f"Audience: {_md(_ring_text(stage))}.", ""]
        if stage.arms:
            out += [*_md_table(ARM_HEAD, [_arm_cells(a) for a in stage.arms]), ""]
        if stage.guardrails:
            out += _md_table(GUARDRAIL_HEAD, [_guardrail_cells(g, stage) for g in stage.guardrails])
        out += [""] + ([f"Comparison: {_md(stage.comparison)}.", ""] if stage.comparison else [])
        out += [f"Sample ratio: {_md(_srm_text(stage.srm))}."]
    if report.charts:
        out += ["", "## Guardrails over time", ""]
        for figure in report.charts:
            out += [f"- {_md(figure.text())}"]
            out += [f"- {_md(figure.arms_text())}"] if figure.per_arm else []
        out += ["", "_The HTML report (`--html FILE`) draws each as a chart._"]
    out += ["", "## Decisions", "", *_md_table(DECISION_HEAD, list(_decision_cells(report)))]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    """``text`` safe inside Markdown: one line, every markup character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(displayable(text).split()))


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]


# -- HTML ----------------------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;
max-width:72rem;padding:0 1rem;color:#1b1f24;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1.05rem;margin-top:1.5rem}
p.verdict{font-size:1.1rem;font-weight:600;overflow-wrap:anywhere}
table{border-collapse:collapse;margin:.5rem 0;width:100%;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right}.note{color:#57606a}
.regressed{color:#b42318;font-weight:600}.ok{color:#1a7f37}
.wrap{overflow-x:auto}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dt{font-weight:600}dd{margin:0;min-width:0;overflow-wrap:anywhere}
figure{margin:.5rem 0}figcaption{color:#57606a}
svg.chart{display:block;min-width:560px;height:auto;font-size:12px;color:#1b1f24}
/* a chart too wide for the screen scrolls, starting at its newest end */
.newest{direction:rtl}.newest>svg{direction:ltr}
svg.chart text{fill:currentColor}svg.chart .tick{fill:#57606a}
svg.chart .bound,svg.chart .delta{color:#0969da}svg.chart .point{fill:#0969da}
svg.chart .tolerance,svg.chart .crossing{color:#cf222e}
svg.chart .tolerance-label,svg.chart .crossing-label{fill:#cf222e}
svg.chart .crossing-label{font-weight:600}svg.chart .zero,svg.chart .stage{color:#59636e}
svg.chart .stage-label{fill:#59636e}svg.chart .decision{color:#9a6700}
svg.chart .decision-label{fill:#9a6700}summary{cursor:pointer}
svg.arms-chart{display:block;min-width:560px;height:auto;font-size:12px;color:#1b1f24}
svg.arms-chart text{fill:currentColor}svg.arms-chart .tick{fill:#57606a}
svg.arms-chart .treatment{color:#0969da}svg.arms-chart text.treatment{fill:#0969da}
svg.arms-chart .control{color:#59636e}svg.arms-chart text.control{fill:#59636e}
svg.arms-chart polyline{fill:none}svg.arms-chart .stage{color:#59636e}
"""


def html_page(report: Report) -> str:
    """The report as one HTML page with nothing to load."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Canary report: {_h(report.flag)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Canary report: {_h(report.flag)}</h1>",
        f'<p class="verdict">{_h(report.verdict)}</p>' if report.verdict else "",
        "<dl>",
        *(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in _summary(report)),
        "</dl>",
        *(f'<p class="note">{_h(note)}</p>' for note in report.notes),
        *_h_narrative(report),
        "<h2>Stages</h2>",
        _h_table(STAGE_HEAD, [_stage_cells(s) for s in report.stages]),
        *(f"<h2>{t}</h2>{_h_table(head, rows)}" for t, head, rows in _held_back(report)),
        *_h_charts(report.charts),
    ]
    for stage in report.stages:
        parts += _h_stage(stage)
    parts += ["<h2>Decisions</h2>", _h_table(DECISION_HEAD, list(_decision_cells(report)))]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _byline(report: Report) -> str:
    model = report.narrated_by or "the model"
    return f"Written by {model}; every number in it was checked against the evidence."


def _h_narrative(report: Report) -> list[str]:
    if not report.narrative:
        return []
    return [
        "<h2>In short</h2>",
        f"<p>{_h(report.narrative)}</p>",
        f'<p class="note">{_h(_byline(report))}</p>',
    ]


def _h_charts(charts: list[Figure]) -> list[str]:
    """Each guardrail over the rollout: the chart, its description, and its numbers."""
    if not charts:
        return []
    parts = ["<h2>Guardrails over time</h2>", f'<p class="note">{_h(CHART_KEY)}</p>']
    for figure in charts:
        metric, shown = _h(figure.metric), min(len(figure.points), TABLE_ROWS)
        # The chart and its table are drawn from numbers and escape their own text.
        parts += [
            f'<section class="guardrail" data-metric="{metric}"><h3>{metric}</h3>',
            f'<figure><div class="wrap newest" tabindex="0" role="region"'
            f' aria-label="{metric} chart">'
            f"{figure.svg()}</div><figcaption>{_h(figure.text())}</figcaption></figure>",
            *_h_arms(figure),
            f"<details><summary>numbers for {metric}: the latest {shown} gates, newest first"
            f'</summary><div class="wrap" tabindex="0">{figure.table(limit=TABLE_ROWS)}</div>'
            "</details></section>",
        ]
    return parts


def _h_arms(figure: Figure) -> list[str]:
    """Each arm's own value beside Δ, where the history records it (rates)."""
    if not figure.per_arm:
        return []
    return [
        f'<figure><div class="wrap newest" tabindex="0" role="region"'
        f' aria-label="{_h(figure.metric)} per arm">{figure.arms_svg()}</div>'
        f"<figcaption>{_h(figure.arms_text())} Treatment solid, control dashed.</figcaption>"
        "</figure>"
    ]


def _ring_text(stage: StageReport) -> str:
    """``segment("staff") 100%, compared against a concurrent control``."""
    return f"{stage.audience}, compared against {stage.compared}"


def _h_stage(stage: StageReport) -> list[str]:
    parts = [
        f"<section><h3>{_h(stage.label)}</h3>",
        f"<p>{_h(duration(stage.duration_s))}, ended by {_h(stage.outcome)}.",
    ]
    if stage.evidence_from:
        parts.append(f' <span class="note">Numbers from: {_h(stage.evidence_from)}.</span>')
    parts.append("</p>")
    if stage.audience:
        parts.append(f"<p>Audience: {_h(_ring_text(stage))}.</p>")
    if stage.arms:
        parts.append(_h_table(ARM_HEAD, [_arm_cells(a) for a in stage.arms]))
    if stage.guardrails:
        rows = [_guardrail_cells(g, stage) for g in stage.guardrails]
        parts.append(_h_table(GUARDRAIL_HEAD, rows, marked=1))
    if stage.comparison:
        parts.append(f"<p>Comparison: {_h(stage.comparison)}.</p>")
    parts.append(f"<p>Sample ratio: {_h(_srm_text(stage.srm))}.</p>")
    parts.append("</section>")
    return parts


def _h_table(head: list[str], rows: list[list[str]], *, marked: int | None = None) -> str:
    if not rows:
        return '<p class="note">(none)</p>'
    out = ['<div class="wrap" tabindex="0"><table><thead><tr>']
    out += [f'<th scope="col">{_h(cell)}</th>' for cell in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = _css(cell) if i == marked else "n" if _numeric(cell) else ""
            cells.append(f'<td class="{css}">{_h(cell)}</td>' if css else f"<td>{_h(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _css(result: str) -> str:
    return {"regressed": "regressed", "no regression shown": "ok"}.get(result, "")


def _numeric(cell: str) -> bool:
    return bool(re.fullmatch(r"-?[\d,.]+(e[-+]?\d+)?", cell))


def _h(text: str) -> str:
    return html_text(text)
