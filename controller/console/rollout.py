"""The console's rollout page: timeline, guardrail charts, SRM, advisor, decisions, commands.

Pure: the data :class:`controller.daemon.console.ConsoleData` gathers in,
an HTML fragment out. Stages are named as every output names them
(:mod:`controller.core.wording`: ``stage 3/5 (25%)``); the raw evidence shown
under each decision keeps the published (0-based) ``stage`` field as it is on
the wire. The charts are :mod:`controller.console.figures`', the same a
written report draws.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from controller.console.charts import stage_names
from controller.console.figures import Figure, figures
from controller.console.pages import (
    alert_list,
    clock,
    duration,
    esc,
    percent_cell,
    phase_text,
    stage_text,
    ts_ms,
)
from controller.core.headline import verdict_line
from controller.core.limits import comparison_text
from controller.core.messages import Alert, CommandAction, Decision, decision_or_alert
from controller.core.operator import applicable
from controller.core.rollout import PauseReason, Phase
from controller.core.wording import advice_text, decided_at, quotable_rationale, stage_label

MAX_EVIDENCE_CHARS = 6000
MAX_RATIONALE_CHARS = 2000
COMMANDS = (
    ("pause", '--reason "investigating"'),
    ("resume", ""),
    ("promote", ""),
    ("approve", ""),
    ("rollback", '--reason "..."'),
    ("abort", '--reason "..."'),
    ("kill", '--reason "..."'),
)
"""Every command a rollout may be sent; the page offers those its phase accepts."""
ENDED = ("rolled_back", "killed", "aborted")
ARMS_CAPTION = "; below it, each arm's own value (treatment solid, control dashed)"


def rollout_detail(detail: Mapping[str, Any]) -> str:
    """The rollout page's live fragment."""
    status: Mapping[str, Any] = detail.get("status", {})
    history: Mapping[str, Any] = detail.get("history", {})
    messages: Sequence[Mapping[str, Any]] = detail.get("messages", [])
    parsed = [(m, decision_or_alert(m)) for m in messages]
    decisions = [m for m, read in parsed if isinstance(read, Decision)]
    alerts = [m for m, read in parsed if isinstance(read, Alert)]
    flag = str(status.get("flag", ""))
    return "".join(
        [
            _summary(flag, status, verdict_line(status, decisions)),
            _timeline(status, detail.get("plan", {}), history),
            _charts(detail.get("plan", {}), history, decisions),
            _srm(status, history),
            _advisor(decisions),
            _decisions(decisions),
            f'<section aria-labelledby="h-alerts"><h2 id="h-alerts">Alerts</h2>'
            f"{alert_list(list(reversed(alerts)))}</section>",
            _commands(flag, status),
        ]
    )


def _summary(flag: str, s: Mapping[str, Any], verdict_text: str) -> str:
    """The flag, then its verdict in one line before any evidence, then where it stands."""
    verdict = s.get("verdict")
    gate = (
        f"<dt>gate now</dt><dd><b>{esc(verdict)}</b>: {esc(s.get('verdict_reason', ''))}</dd>"
        if verdict
        else ""
    )
    return (
        f'<h1 data-flag="{esc(flag)}">{esc(flag)}</h1>'
        f'<p class="verdict">{esc(verdict_text)}</p><dl class="summary">'
        f'<dt>phase</dt><dd class="phase">{esc(phase_text(s))}</dd>'
        f'<dt>stage</dt><dd class="stage">{esc(stage_text(s))}</dd>'
        f"<dt>serving</dt><dd>{percent_cell(s.get('percent'))} of units</dd>"
        f"<dt>time in stage</dt><dd>{esc(_in_stage(s))}</dd>{_next_move(s)}"
        f"<dt>plan</dt><dd>{esc(s.get('plan', ''))}</dd>{gate}</dl>"
    )


def _next_move(s: Mapping[str, Any]) -> str:
    """Why the rollout stands still and until when, in one line; nothing when it moves."""
    move = s.get("next_move")
    why = move.get("why") if isinstance(move, Mapping) else None
    if not why:
        return ""
    return f'<dt>next move</dt><dd class="next-move">{esc(why)}</dd>'


def _in_stage(s: Mapping[str, Any]) -> str:
    if s.get("phase") not in ("running", "paused"):
        return "-"
    return duration(s.get("time_in_stage_s"))


def _timeline(
    status: Mapping[str, Any], plan: Mapping[str, Any], history: Mapping[str, Any]
) -> str:
    current, phase = status.get("stage", 0), status.get("phase", "")
    started = {st.get("stage"): _first_ts(st) for st in history.get("stages", [])}
    percents = plan.get("stages", [])
    items = []
    for i, percent in enumerate(percents):
        if phase == "completed" or i < current:
            state = "passed"
        elif i == current:
            state = _ended_state(str(phase)) if phase in ENDED else "current"
        else:
            state = "pending"
        when = started.get(i)
        # The time is when the stage began, whatever became of it.
        at = f" <small>· started</small> <time>{esc(clock(when))}</time>" if when else ""
        current_attr = ' aria-current="step"' if i == current and state == "current" else ""
        label = esc(stage_label(i, len(percents), percent))
        items.append(
            f'<li class="{state}"{current_attr}><b>{label}</b> <small>{state}</small>{at}</li>'
        )
    return (
        '<section aria-labelledby="h-stages"><h2 id="h-stages">Stages</h2>'
        f'<ol class="timeline">{"".join(items)}</ol></section>'
    )


def _ended_state(phase: str) -> str:
    """A stage a rollout ended in: ``failed`` when rolled back or killed, ``ended`` when aborted.

    An abort is an operator's choice, not a verdict on the flag: it is shown neutral.
    """
    return "ended" if phase == "aborted" else "failed"


def _first_ts(stage: Mapping[str, Any]) -> int | None:
    points = stage.get("points") or []
    return int(points[0]["ts_ms"]) if points else None


def _charts(
    plan: Mapping[str, Any], history: Mapping[str, Any], decisions: Sequence[Mapping[str, Any]]
) -> str:
    sections = []
    for figure in figures(history, decisions, plan.get("guardrails", [])):
        metric = figure.metric
        sections.append(
            f'<figure class="guardrail" data-metric="{esc(metric)}">'
            '<div class="scroll chart-scroll" tabindex="0" role="region"'
            f' aria-label="{esc(metric)} chart">'
            f"{figure.svg()}</div>{_arms(figure)}"
            f"<figcaption>{esc(metric)}: Δ (line) and its always-valid bound (band);"
            f" dashed: tolerance{' (dry run)' if figure.dry_run else ''}"
            f"{ARMS_CAPTION if figure.per_arm else ''}"
            "</figcaption>"
            f"<details><summary>numbers for {esc(metric)}</summary>{figure.table()}</details>"
            "</figure>"
        )
    body = "".join(sections) or '<p class="none">No guardrails in this plan.</p>'
    return _section("guardrails", "Guardrails", body)


def _arms(figure: Figure) -> str:
    """Each arm's own value beside Δ, where the history records it (rates)."""
    if not figure.per_arm:
        return ""
    return (
        '<div class="scroll chart-scroll" tabindex="0" role="region"'
        f' aria-label="{esc(figure.metric)} per arm">{figure.arms_svg()}</div>'
    )


def _srm(status: Mapping[str, Any], history: Mapping[str, Any]) -> str:
    """The sample-ratio check now, or as the last recorded gate saw it once the rollout ended."""
    evidence = status.get("evidence") or {}
    srm, arms = evidence.get("srm"), evidence.get("arms") or {}
    compared = comparison_text(evidence)
    note = f'<p class="comparison"><b>Comparison</b>: {esc(compared)}</p>' if compared else ""
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
            f" {esc(stage_names(history).get(last.get('stage', 0), ''))}): sequential p ="
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
    return _section("srm", "Sample ratio", note + text + table)


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
    """The advisor's opinion in the words the demo and reports use, then the gate's decision."""
    when = f"<time>{esc(clock(decision.get('ts')))}</time>"
    said = esc(advice_text(dict(advice), rationale_chars=0))
    rationale, _ = quotable_rationale(dict(advice))  # incoherent: advice_text says so instead
    rationale = rationale[:MAX_RATIONALE_CHARS]
    why = (
        f'<br>Advisor\'s rationale: <q class="rationale">{esc(rationale)}</q>'
        if advice.get("status") == "ok" and rationale
        else ""
    )
    return (
        f"<li>{when} {_stage(decision)}: {said}; the gate decided"
        f" <b>{esc(decision.get('action', ''))}</b>.{why}</li>"
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
    """Where a decision was taken, as alerts, views and reports say it: ``at stage 3/5 (25%)``."""
    return esc(decided_at(dict(d)))


def _commands(flag: str, status: Mapping[str, Any]) -> str:
    """The commands this rollout's phase accepts (the state machine's rules), ready to paste."""
    quoted = shlex.quote(flag)
    offered = {action.value for action in _applicable(status)}
    lines = "\n".join(
        f"rolloutctl {action} {quoted}{' ' + extra if extra else ''}"
        for action, extra in COMMANDS
        if action in offered
    )
    phase = str(status.get("phase", "")).replace("_", " ")[:32]
    body = (
        "<p>The console is read-only. Run these with your own operator key"
        " (<code>ROLLOUTCTL_KEY_ID</code>):</p>"
        f'<pre class="commands">{esc(lines)}</pre>'
        if lines
        else f'<p class="none">The rollout is {esc(phase) or "in no phase"}: no command applies.'
        f" A new rollout starts with <code>rolloutctl start {esc(quoted)} --plan FILE</code>.</p>"
    )
    return f'<section aria-labelledby="h-commands"><h2 id="h-commands">Act</h2>{body}</section>'


def _applicable(status: Mapping[str, Any]) -> list[CommandAction]:
    phases = {p.value: p for p in Phase}
    reasons = {r.value: r for r in PauseReason}
    phase = phases.get(str(status.get("phase")))
    return applicable(phase, reasons.get(str(status.get("pause_reason")))) if phase else []


def _num(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.3g}"
    return esc(value)


def _section(slug: str, title: str, body: str) -> str:
    return f'<section aria-labelledby="h-{slug}"><h2 id="h-{slug}">{title}</h2>{body}</section>'
