"""The console's rollout page: timeline, guardrail charts, SRM, advisor, decisions, commands.

Pure: the data :class:`controller.daemon.console.ConsoleData` gathers in,
an HTML fragment out. Stages are counted from 1 here, as in ``rolloutctl
status``; the raw evidence shown under each decision keeps the published
(0-based) ``stage`` field as it is on the wire.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from controller.console.charts import ChartPoint, Mark, chart_points, chart_table, guardrail_chart
from controller.console.pages import (
    alert_list,
    clock,
    duration,
    esc,
    phase_text,
    stage_text,
    ts_ms,
)

MAX_EVIDENCE_CHARS = 6000
COMMANDS = (
    ("pause", '--reason "investigating"'),
    ("resume", ""),
    ("promote", ""),
    ("approve", ""),
    ("rollback", '--reason "..."'),
    ("kill", '--reason "..."'),
)


def rollout_detail(detail: Mapping[str, Any]) -> str:
    """The rollout page's live fragment."""
    status: Mapping[str, Any] = detail.get("status", {})
    history: Mapping[str, Any] = detail.get("history", {})
    messages: Sequence[Mapping[str, Any]] = detail.get("messages", [])
    decisions = [m for m in messages if m.get("type") == "decision"]
    alerts = [m for m in messages if m.get("type") == "alert"]
    flag = str(status.get("flag", ""))
    return "".join(
        [
            _summary(flag, status),
            _timeline(status, detail.get("plan", {}), history),
            _charts(detail.get("plan", {}), history, decisions),
            _srm(status, history),
            _advisor(decisions),
            _decisions(decisions),
            f'<section aria-labelledby="h-alerts"><h2 id="h-alerts">Alerts</h2>'
            f"{alert_list(list(reversed(alerts)))}</section>",
            _commands(flag),
        ]
    )


def _summary(flag: str, s: Mapping[str, Any]) -> str:
    verdict = s.get("verdict")
    gate = (
        f"<dt>gate now</dt><dd><b>{esc(verdict)}</b>: {esc(s.get('verdict_reason', ''))}</dd>"
        if verdict
        else ""
    )
    return (
        f'<h1 data-flag="{esc(flag)}">{esc(flag)}</h1><dl class="summary">'
        f'<dt>phase</dt><dd class="phase">{esc(phase_text(s))}</dd>'
        f"<dt>stage</dt><dd>{esc(stage_text(s))} at {esc(s.get('percent', '-'))}%</dd>"
        f"<dt>time in stage</dt><dd>{esc(_in_stage(s))}</dd>"
        f"<dt>plan</dt><dd>{esc(s.get('plan', ''))}</dd>{gate}</dl>"
    )


def _in_stage(s: Mapping[str, Any]) -> str:
    if s.get("phase") not in ("running", "paused"):
        return "-"
    return duration(s.get("time_in_stage_s"))


def _timeline(
    status: Mapping[str, Any], plan: Mapping[str, Any], history: Mapping[str, Any]
) -> str:
    current, phase = status.get("stage", 0), status.get("phase", "")
    started = {st.get("stage"): _first_ts(st) for st in history.get("stages", [])}
    items = []
    for i, percent in enumerate(plan.get("stages", [])):
        if phase == "completed" or i < current:
            state = "passed"
        elif i == current:
            state = "failed" if phase in ("rolled_back", "killed", "aborted") else "current"
        else:
            state = "pending"
        when = started.get(i)
        at = f" <time>{esc(clock(when))}</time>" if when else ""
        current_attr = ' aria-current="step"' if i == current and state == "current" else ""
        items.append(
            f'<li class="{state}"{current_attr}><b>{i + 1}</b> {esc(percent)}%'
            f" <small>{state}</small>{at}</li>"
        )
    return (
        '<section aria-labelledby="h-stages"><h2 id="h-stages">Stages</h2>'
        f'<ol class="timeline">{"".join(items)}</ol></section>'
    )


def _first_ts(stage: Mapping[str, Any]) -> int | None:
    points = stage.get("points") or []
    return int(points[0]["ts_ms"]) if points else None


def _charts(
    plan: Mapping[str, Any], history: Mapping[str, Any], decisions: Sequence[Mapping[str, Any]]
) -> str:
    stage_marks = [
        Mark(ts, f"stage {st['stage'] + 1}")
        for st in history.get("stages", [])
        if (ts := _first_ts(st)) is not None and st.get("stage", 0) > 0
    ]
    acted = [d for d in decisions if d.get("kind") == "gate" or d.get("outcome") == "applied"]
    decision_marks = [
        Mark(ms, str(d.get("action", ""))) for d in acted if (ms := ts_ms(d.get("ts"))) is not None
    ]
    sections = []
    for guardrail in plan.get("guardrails", []):
        metric = str(guardrail.get("metric", ""))
        points = chart_points(history, metric)
        tolerance, lower_is_better = _tolerance(history, metric, guardrail)
        svg = guardrail_chart(
            points,
            tolerance,
            metric=metric,
            lower_is_better=lower_is_better,
            stages=stage_marks,
            decisions=[m for m in decision_marks if _within(m, points)],
        )
        sections.append(
            f'<figure class="guardrail" data-metric="{esc(metric)}">'
            '<div class="scroll chart-scroll" tabindex="0" role="region"'
            f' aria-label="{esc(metric)} chart">'
            f"{svg}</div>"
            f"<figcaption>{esc(metric)}: Δ (line) and its always-valid bound (band);"
            f" dashed: tolerance{' (dry run)' if guardrail.get('dry_run') else ''}</figcaption>"
            f"<details><summary>numbers for {esc(metric)}</summary>{chart_table(points)}</details>"
            "</figure>"
        )
    body = "".join(sections) or '<p class="none">No guardrails in this plan.</p>'
    return _section("guardrails", "Guardrails", body)


def _within(mark: Mark, points: Sequence[ChartPoint]) -> bool:
    """Only decisions of this rollout's charted span (plus a minute) are marked."""
    return bool(points) and points[0].ts_ms - 60_000 <= mark.ts_ms <= points[-1].ts_ms + 60_000


def _tolerance(
    history: Mapping[str, Any], metric: str, guardrail: Mapping[str, Any]
) -> tuple[float, bool]:
    """The absolute tolerance and direction the latest test of ``metric`` used."""
    for stage in reversed(history.get("stages", [])):
        for point in reversed(stage.get("points", [])):
            test = point.get("guardrails", {}).get(metric)
            if isinstance(test, dict):
                return float(test["tolerance"]), test["direction"] == "lower_is_better"
    return float(guardrail.get("tolerance", 0.0)), bool(guardrail.get("lower_is_better", True))


def _srm(status: Mapping[str, Any], history: Mapping[str, Any]) -> str:
    """The sample-ratio check now, or as the last recorded gate saw it once the rollout ended."""
    evidence = status.get("evidence") or {}
    srm, arms = evidence.get("srm"), evidence.get("arms") or {}
    if isinstance(srm, dict):
        flagged = "mismatch" if srm.get("flagged") else "ok"
        text = (
            f'<p class="srm {flagged}"><b>{flagged}</b>: {esc(srm.get("observed_treatment"))}'
            f" treatment units against {_num(srm.get('expected_treatment'))} expected;"
            f" sequential p = {_num(srm.get('sequential_p_value'))}"
            f" (threshold {esc(srm.get('p_threshold'))})</p>"
        )
    elif (last := _last_point(history)) is not None:
        arms = last.get("arms") or {}
        text = (
            f'<p class="srm">At the last recorded gate ({esc(clock(last.get("ts_ms")))},'
            f" stage {esc(last.get('stage', 0) + 1)}): sequential p ="
            f" {_num(last.get('srm_p'))}</p>"
        )
    else:
        text = '<p class="none">No gate evidence yet.</p>'
    rows = "".join(
        f'<tr><th scope="row">{esc(arm)}</th>'
        + "".join(f"<td>{esc(counts.get(k, 0))}</td>" for k in _ARM_COLUMNS)
        + "</tr>"
        for arm, counts in arms.items()
        if isinstance(counts, dict)
    )
    head = "".join(f'<th scope="col">{k}</th>' for k in _ARM_COLUMNS)
    table = (
        '<div class="scroll" tabindex="0" role="region" aria-label="arms">'
        f'<table class="arms"><thead><tr><th scope="col">arm</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
        if rows
        else ""
    )
    return _section("srm", "Sample ratio", text + table)


def _last_point(history: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for stage in reversed(history.get("stages", [])):
        if stage.get("points"):
            point: Mapping[str, Any] = stage["points"][-1]
            return point
    return None


_ARM_COLUMNS = ("units", "exposures", "requests", "errors", "conversions")


def _advisor(decisions: Sequence[Mapping[str, Any]]) -> str:
    opinions = [
        (d, a) for d in decisions if isinstance(a := (d.get("evidence") or {}).get("advisor"), dict)
    ]
    if not opinions:
        body = '<p class="none">No advisor opinions recorded.</p>'
    else:
        body = (
            '<ul class="advisor">'
            + "".join(_opinion(d, a) for d, a in reversed(opinions))
            + "</ul>"
        )
    return f'<section aria-labelledby="h-advisor"><h2 id="h-advisor">Advisor</h2>{body}</section>'


def _opinion(decision: Mapping[str, Any], advice: Mapping[str, Any]) -> str:
    when = f"<time>{esc(clock(decision.get('ts')))}</time>"
    if advice.get("status") != "ok":
        return f"<li>{when} advisor unavailable: {esc(advice.get('cause', ''))}</li>"
    return (
        f"<li>{when} {_stage(decision)} advisor said <b>{esc(advice.get('action', ''))}</b>"
        f" (confidence {esc(advice.get('confidence', ''))}, {esc(advice.get('model', ''))},"
        f" {esc(advice.get('latency_ms', ''))} ms); the gate decided"
        f" <b>{esc(decision.get('action', ''))}</b>."
        f'<br><q class="rationale">{esc(advice.get("rationale", ""))}</q></li>'
    )


def _decisions(decisions: Sequence[Mapping[str, Any]]) -> str:
    if not decisions:
        body = '<p class="none">No decisions yet.</p>'
    else:
        body = (
            '<ul class="decisions">' + "".join(_decision(d) for d in reversed(decisions)) + "</ul>"
        )
    return _section("decisions", "Decisions", body)


def _decision(d: Mapping[str, Any]) -> str:
    evidence = orjson.dumps(d.get("evidence") or {}, option=orjson.OPT_INDENT_2).decode()
    if len(evidence) > MAX_EVIDENCE_CHARS:
        evidence = evidence[:MAX_EVIDENCE_CHARS] + "\n… (cut; the full evidence is on the topic)"
    return (
        f'<li class="decision {esc(d.get("outcome", ""))}" data-action="{esc(d.get("action", ""))}"'
        f' data-ts="{ts_ms(d.get("ts")) or ""}" id="decision-{esc(d.get("id", ""))}">'
        f"<time>{esc(clock(d.get('ts')))}</time> {_stage(d)}"
        f" <b>{esc(d.get('action', ''))}</b> {esc(d.get('outcome', ''))}"
        f" <small>({esc(d.get('kind', ''))})</small>: {esc(d.get('reason', ''))}"
        f"<details><summary>evidence</summary><pre>{esc(evidence)}</pre></details></li>"
    )


def _stage(d: Mapping[str, Any]) -> str:
    stage = d.get("stage")
    return f"stage {stage + 1}" if isinstance(stage, int) and not isinstance(stage, bool) else ""


def _commands(flag: str) -> str:
    quoted = shlex.quote(flag)
    lines = "\n".join(
        f"rolloutctl {action} {quoted}{' ' + extra if extra else ''}" for action, extra in COMMANDS
    )
    return (
        '<section aria-labelledby="h-commands"><h2 id="h-commands">Act</h2>'
        "<p>The console is read-only. Run these with your own operator key"
        " (<code>ROLLOUTCTL_KEY_ID</code>):</p>"
        f'<pre class="commands">{esc(lines)}</pre></section>'
    )


def _num(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.3g}"
    return esc(value)


def _section(slug: str, title: str, body: str) -> str:
    return f'<section aria-labelledby="h-{slug}"><h2 id="h-{slug}">{title}</h2>{body}</section>'
