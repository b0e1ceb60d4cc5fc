"""A canary report as Markdown or as one self-contained HTML page.

Pure functions of :class:`controller.ctl.report.model.Report`. The HTML page has its
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

import re

from controller.console.figures import Figure
from controller.core.common import displayable, html_text
from controller.core.reading import State
from controller.ctl.report.cells import (
    ARM_HEAD,
    CHART_KEY,
    DECISION_HEAD,
    GUARDRAIL_HEAD,
    LIMIT_HEAD,
    LIMIT_KEY,
    STAGE_HEAD,
    TABLE_ROWS,
    arm_cells,
    decision_cells,
    guardrail_cells,
    held_back,
    limit_cells,
    srm_text,
    stage_cells,
    stage_span,
    summary_rows,
    widening_notes,
)
from controller.ctl.report.model import (
    Report,
    StageReport,
)

_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|~])")
_HEADING = re.compile(r"<(/?)h([1-5])")


# -- Markdown ------------------------------------------------------------------------------


def markdown(report: Report, *, depth: int = 0) -> str:
    """The report as GitHub-flavoured Markdown; ``depth`` more ``#`` to each heading (a
    section of a release report)."""
    h = "#" * depth
    out = [f"{h}# Canary report: {_md(report.flag)}", ""]
    out += [f"**{_md(report.verdict)}**", ""] if report.verdict else []
    out += [f"- **{name}**: {_md(value)}" for name, value in summary_rows(report)]
    out += [""] + [f"> {_md(note)}" for note in report.notes]
    if report.narrative:
        out += ["", f"{h}## In short", "", _md(report.narrative), "", f"_{_md(_byline(report))}_"]
    out += [
        "",
        f"{h}## Stages",
        "",
        *_md_table(STAGE_HEAD, [stage_cells(s) for s in report.stages]),
    ]
    for title, head, rows in held_back(report):
        out += ["", f"{h}## {title}", "", *_md_table(head, rows)]
    for stage in report.stages:
        out += ["", f"{h}### {_md(stage.label)}", "", *_md_stage(stage)]
    if report.charts:
        out += ["", f"{h}## {_charts_title(report.charts)}", ""]
        for figure in report.charts:
            out += [f"- {_md(figure.text())}"]
            out += [f"- {_md(figure.arms_text())}"] if figure.per_arm else []
        if rows := [row for f in report.charts if f.limit is not None for row in limit_cells(f)]:
            out += ["", _md(LIMIT_KEY), "", *_md_table(LIMIT_HEAD, rows)]
        out += ["", "_The HTML report (`--html FILE`) draws each as a chart._"]
    out += ["", f"{h}## Decisions", "", *_md_table(DECISION_HEAD, list(decision_cells(report)))]
    return "\n".join(out) + "\n"


def md_text(text: str) -> str:
    """``text`` safe inside Markdown: one line, every markup character escaped."""
    return _md(text)


def _md_stage(stage: StageReport) -> list[str]:
    """One stage's section in Markdown, below its heading."""
    out = [f"{_md(stage_span(stage))}, ended by {_md(stage.outcome)}."]
    if stage.evidence_from:
        out += [f"Numbers from: {_md(stage.evidence_from)}.", ""]
    if stage.audience:
        out += [f"Audience: {_md(_ring_text(stage))}.", ""]
    if stage.arms:
        out += [*_md_table(ARM_HEAD, [arm_cells(a) for a in stage.arms]), ""]
    if stage.guardrails:
        out += _md_table(GUARDRAIL_HEAD, [guardrail_cells(g, stage) for g in stage.guardrails])
        if notes := widening_notes(stage):
            out += ["", *(f"- {_md(note)}" for note in notes)]
    out += [""] + ([f"Comparison: {_md(stage.comparison)}.", ""] if stage.comparison else [])
    if stage.failures:
        out += [*(f"- What broke: {_md(said)}" for said in stage.failures), ""]
    if stage.sources:  # an indented block: a query's text cannot leave it
        out += [*(f"    {displayable(line)}" for line in stage.sources), ""]
    return [*out, f"Sample ratio: {_md(srm_text(stage.srm))}."]


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
svg.chart .collecting{color:#59636e}svg.chart .collecting-label{fill:#59636e;font-style:italic}
svg.arms-chart{display:block;min-width:560px;height:auto;font-size:12px;color:#1b1f24}
svg.arms-chart text{fill:currentColor}svg.arms-chart .tick{fill:#57606a}
svg.arms-chart .treatment{color:#0969da}svg.arms-chart text.treatment{fill:#0969da}
svg.arms-chart .control{color:#59636e}svg.arms-chart text.control{fill:#59636e}
svg.arms-chart polyline{fill:none}svg.arms-chart .stage{color:#59636e}
"""


def html_page(report: Report) -> str:
    """The report as one HTML page with nothing to load."""
    return page_around(f"Canary report: {report.flag}", html_body(report))


def page_around(title: str, body: str) -> str:
    """A self-contained page around ``body`` (its CSS inline)."""
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_h(title)}</title>\n<style>{CSS}</style></head><body>\n"
    )
    return head + body + "</body></html>\n"


def html_body(report: Report, *, depth: int = 0) -> str:
    """The report's HTML, its headings ``depth`` levels down (a section of a release report)."""
    parts = [
        f"<h1>Canary report: {_h(report.flag)}</h1>",
        f'<p class="verdict">{_h(report.verdict)}</p>' if report.verdict else "",
        "<dl>",
        *(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in summary_rows(report)),
        "</dl>",
        *(f'<p class="note">{_h(note)}</p>' for note in report.notes),
        *_h_narrative(report),
        "<h2>Stages</h2>",
        _h_table(STAGE_HEAD, [stage_cells(s) for s in report.stages]),
        *(f"<h2>{t}</h2>{_h_table(head, rows)}" for t, head, rows in held_back(report)),
        *_h_charts(report.charts),
    ]
    for stage in report.stages:
        parts += _h_stage(stage)
    parts += ["<h2>Decisions</h2>", _h_table(DECISION_HEAD, list(decision_cells(report)))]
    body = "\n".join(parts) + "\n"
    # Every value is escaped, so the only tags named h1-h5 are the report's own headings.
    return _HEADING.sub(lambda m: f"<{m[1]}h{int(m[2]) + depth}", body) if depth else body


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
    parts = [f"<h2>{_charts_title(charts)}</h2>", f'<p class="note">{_h(CHART_KEY)}</p>']
    if any(figure.limit is not None for figure in charts):
        parts.append(f'<p class="note">{_h(LIMIT_KEY)}</p>')
    for figure in charts:
        metric, shown = _h(figure.metric), min(len(figure.points), TABLE_ROWS)
        kind, title = (
            ("limit", f"{metric} limit") if figure.limit is not None else ("guardrail", metric)
        )
        # The chart and its table are drawn from numbers and escape their own text.
        parts += [
            f'<section class="{kind}" data-{"limit" if kind == "limit" else "metric"}="{metric}">'
            f"<h3>{title}</h3>",
            f'<figure><div class="wrap newest" tabindex="0" role="region"'
            f' aria-label="{metric} chart">'
            f"{figure.svg()}</div><figcaption>{_h(figure.text())}</figcaption></figure>",
            *_h_arms(figure),
            f"<details><summary>numbers for {metric}: the latest {shown} gates, newest first"
            f'</summary><div class="wrap" tabindex="0">{figure.table(limit=TABLE_ROWS)}</div>'
            "</details></section>",
        ]
    return parts


def _charts_title(charts: list[Figure]) -> str:
    """``Guardrails over time``, ``and limits`` where a stage without control drew one."""
    limited = any(figure.limit is not None for figure in charts)
    return "Guardrails and limits over time" if limited else "Guardrails over time"


def _h_arms(figure: Figure) -> list[str]:
    """Each arm's own value beside Δ, where the history records it (rates, latency)."""
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
        f"<p>{_h(stage_span(stage))}, ended by {_h(stage.outcome)}.",
    ]
    if stage.evidence_from:
        parts.append(f' <span class="note">Numbers from: {_h(stage.evidence_from)}.</span>')
    parts.append("</p>")
    if stage.audience:
        parts.append(f"<p>Audience: {_h(_ring_text(stage))}.</p>")
    if stage.arms:
        parts.append(_h_table(ARM_HEAD, [arm_cells(a) for a in stage.arms]))
    if stage.guardrails:
        rows = [guardrail_cells(g, stage) for g in stage.guardrails]
        parts.append(_h_table(GUARDRAIL_HEAD, rows, marked=1))
        parts += [f'<p class="widening">{_h(note)}</p>' for note in widening_notes(stage)]
    if stage.comparison:
        parts.append(f"<p>Comparison: {_h(stage.comparison)}.</p>")
    parts += [f'<p class="failure">What broke: {_h(said)}</p>' for said in stage.failures]
    if stage.sources:
        parts.append(f'<pre class="sources">{_h(chr(10).join(stage.sources))}</pre>')
    parts.append(f"<p>Sample ratio: {_h(srm_text(stage.srm))}.</p>")
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
    """A guardrail's state marked: red when regressed, green only when harm is excluded."""
    return MARKED.get(result.partition(" (")[0], "")


MARKED: dict[str, str] = {State.REGRESSED: "regressed", State.HOLDS: "ok"}
"""The class of a guardrail's state in a table: none but these two is news either way."""


def _numeric(cell: str) -> bool:
    return bool(re.fullmatch(r"-?[\d,.]+(e[-+]?\d+)?", cell))


def _h(text: str) -> str:
    return html_text(text)
