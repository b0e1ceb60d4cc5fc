"""The console's rollout page: timeline, guardrail charts, SRM, advisor, decisions, commands.

Pure: a :class:`RolloutPage` of typed views (the rollout's status and gate
history, its decisions and alerts as published) in, an HTML fragment out.
Stages are named as every output names them
(:mod:`controller.core.reading.wording`: ``stage 3/5 (25%)``); the raw evidence shown
under each decision keeps the published (0-based) ``stage`` field as it is on
the wire. The charts are :mod:`controller.console.figures`', the same a
written report draws; the sample-ratio section is :mod:`controller.console.sample_ratio`';
the advisor, decisions and commands sections are :mod:`controller.console.decisions`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.console.decisions import advisor_section, commands_section, decisions_section
from controller.console.figures import NOT_COMPARED, Figure, GuardrailSpec, figures
from controller.console.pages import (
    alert_list,
    clock,
    duration,
    esc,
    percent_cell,
    phase_text,
    section,
    stage_text,
)
from controller.console.sample_ratio import srm_section
from controller.core.reading import (
    RolloutHistory,
    RolloutView,
    Span,
    budget_text,
    compares,
    dominant_text,
    failure_shares,
    guardrail_state,
    limit_reading,
    limits_said,
    rollout_span,
    running_text,
    source_lines,
    stage_label,
    stage_spans,
    state_text,
    verdict_line,
    widening_text,
)
from controller.core.wire import Alert, Decision, GuardrailTest

ENDED = ("rolled_back", "killed", "aborted")
ARMS_CAPTION = "; below it, each arm's own value (treatment solid, control dashed)"


@dataclass(frozen=True, slots=True)
class RolloutPage:
    """What a rollout's page shows: its status, its plan's ladder and guardrails, its gate
    history, and the decisions and alerts of the rollout (oldest first)."""

    status: RolloutView
    history: RolloutHistory
    messages: Sequence[Decision | Alert] = ()
    stages: Sequence[float] = ()
    """Each stage's planned percent."""
    guardrails: Sequence[GuardrailSpec] = ()
    rings: Sequence[str] = ()
    """Each stage's ring in the rule text form; none when the rollout is untargeted."""
    audience: str = ""
    """The rollout's audience in the rule text form; empty when it has none."""


def rollout_detail(page: RolloutPage) -> str:
    """The rollout page's live fragment."""
    status, history = page.status, page.history
    decisions = [m for m in page.messages if isinstance(m, Decision)]
    alerts = [m for m in page.messages if isinstance(m, Alert)]
    return "".join(
        [
            _summary(status, verdict_line(status, decisions)),
            _timeline(status, page, history),
            _charts(page.guardrails, status, history, decisions),
            srm_section(status, history),
            _what_broke(status),
            _sources(status),
            advisor_section(decisions),
            decisions_section(decisions),
            f'<section aria-labelledby="h-alerts"><h2 id="h-alerts">Alerts</h2>'
            f"{alert_list(list(reversed(alerts)))}</section>",
            commands_section(status),
        ]
    )


def _summary(s: RolloutView, verdict_text: str) -> str:
    """The flag, then its verdict in one line before any evidence, then where it stands."""
    gate = (
        f"<dt>gate now</dt><dd><b>{esc(s.verdict)}</b>: {esc(s.verdict_reason or '')}</dd>"
        if s.verdict
        else ""
    )
    values = f"<dt>values</dt><dd>{esc(s.values.text())}</dd>" if s.values else ""
    gate += _evidence_wait(s)
    return (
        f'<h1 data-flag="{esc(s.flag)}">{esc(s.flag)}</h1>'
        f'<p class="verdict">{esc(verdict_text)}</p><dl class="summary">'
        f'<dt>phase</dt><dd class="phase">{esc(phase_text(s))}</dd>'
        f'<dt>stage</dt><dd class="stage">{esc(stage_text(s))}</dd>'
        f"<dt>serving</dt><dd>{percent_cell(s.percent)} of units</dd>"
        f"<dt>time in stage</dt><dd>{esc(duration(s.time_in_stage_s))}</dd>{_ran(s)}"
        f"{_next_move(s)}{_needs(s)}"
        f"<dt>plan</dt><dd>{esc(s.plan)}</dd>{values}{gate}</dl>"
    )


def _evidence_wait(s: RolloutView) -> str:
    """The partitions the stage waits for, those counted late, and the error budget, when
    any."""
    wait, late, out = s.evidence.incomplete, s.evidence.late, ""
    if wait is not None:
        out += f'<dt>waiting</dt><dd class="evidence-wait">{esc(wait.waiting)}</dd>'
    if late is not None:
        out += f'<dt>late</dt><dd class="evidence-late">{esc(late.why)}</dd>'
    budget = budget_text(s.evidence)
    if budget:
        out += f'<dt>error budget</dt><dd class="error-budget">{esc(budget)}</dd>'
    return out


def _next_move(s: RolloutView) -> str:
    """Why the rollout stands still and until when, in one line; nothing when it moves."""
    if s.next_move is None or not s.next_move.why:
        return ""
    return f'<dt>next move</dt><dd class="next-move">{esc(s.next_move.why)}</dd>'


def _needs(s: RolloutView) -> str:
    """What the running stage still needs before the gate lets it advance, a short list with
    the ring's warning first; nothing when the gate does not hold it."""
    needs = s.needs
    if needs is None or not needs.lines:
        return ""
    warned = needs.empty_ring is not None  # its line comes first
    kinds = ["warning" if warned and i == 0 else "need" for i in range(len(needs.lines))]
    items = "".join(
        f'<li class="{kind}">{esc(line)}</li>'
        for kind, line in zip(kinds, needs.lines, strict=True)
    )
    return f'<dt>still needs</dt><dd class="stage-needs"><ul>{items}</ul></dd>'


def _ran(s: RolloutView) -> str:
    """When the rollout started and ended, and how long it ran in all (so far, while it
    runs)."""
    span = rollout_span(s)
    if span.start is None:
        return ""
    ended = f", ended {clock(span.end)}" if span.end else ""
    took = f", {duration(span.seconds)} {'in all' if span.end else 'so far'}"
    said = f"started {clock(span.start)}{ended}{took if span.seconds is not None else ''}"
    return f'<dt>ran</dt><dd class="ran">{esc(said)}</dd>'


def _timeline(status: RolloutView, page: RolloutPage, history: RolloutHistory) -> str:
    current, phase, percents = status.stage, status.phase, page.stages
    spans = stage_spans(status, history)
    items = []
    for i, percent in enumerate(percents):
        if phase == "completed" or i < current:
            state = "passed"
        elif i == current:
            state = _ended_state(phase) if phase in ENDED else "current"
        else:
            state = "pending"
        at = _when(spans.get(i), running=state == "current" and phase in ("running", "paused"))
        current_attr = ' aria-current="step"' if i == current and state == "current" else ""
        label = f"<b>{esc(stage_label(i, len(percents), percent))}</b>"
        if i < len(page.rings):
            label += f' <small class="ring">{esc(page.rings[i])}</small>'
        items.append(f'<li class="{state}"{current_attr}>{label} <small>{state}</small>{at}</li>')
    within = page.audience and f'<p class="within">Within {esc(page.audience)}</p>'
    return (
        '<section aria-labelledby="h-stages"><h2 id="h-stages">Stages</h2>'
        f'{within}<ol class="timeline">{"".join(items)}</ol></section>'
    )


def _when(span: Span | None, *, running: bool) -> str:
    """A stage's start, end and duration: the time it has run so far while it runs."""
    if span is None or span.start is None:
        return ""
    out = f" <small>· started</small> <time>{esc(clock(span.start))}</time>"
    if span.end is not None:
        out += f' <small>· ended</small> <time class="end">{esc(clock(span.end))}</time>'
    if span.seconds is not None:
        took = "so far" if running else "in all"
        out += f' <small class="took">· {esc(duration(span.seconds))} {took}</small>'
    return out


def _ended_state(phase: str) -> str:
    """A stage a rollout ended in: ``failed`` when rolled back or killed, ``ended`` when aborted.

    An abort is an operator's choice, not a verdict on the flag: it is shown neutral.
    """
    return "ended" if phase == "aborted" else "failed"


def _charts(
    guardrails: Sequence[GuardrailSpec],
    status: RolloutView,
    history: RolloutHistory,
    decisions: Sequence[Decision],
) -> str:
    sections, drawn = [], figures(history, decisions, guardrails)
    for figure in (f for f in drawn if f.limit is None):
        metric = figure.metric
        if not figure.points and figure.empty == NOT_COMPARED:  # a line, not a blank chart
            said = (
                _state(status, metric) or f'<p class="none">{esc(f"{metric}: {NOT_COMPARED}")}</p>'
            )
            sections.append(
                f'<figure class="guardrail not-compared" data-metric="{esc(metric)}">{said}'
                "</figure>"
            )
            continue
        sections.append(
            f'<figure class="guardrail" data-metric="{esc(metric)}">{_state(status, metric)}'
            '<div class="scroll chart-scroll" tabindex="0" role="region"'
            f' aria-label="{esc(metric)} chart">'
            f"{figure.svg()}</div>{_arms(figure)}"
            f"<figcaption>{esc(metric)}: Δ (line) and its always-valid bound (band);"
            f" dashed: tolerance{' (dry run)' if figure.dry_run else ''}"
            f"{ARMS_CAPTION if figure.per_arm else ''}"
            f"{_widening(status, metric)}{_dominant(status, metric)}{_power(status, metric)}"
            "</figcaption>"
            f"<details><summary>numbers for {esc(metric)}</summary>{figure.table()}</details>"
            "</figure>"
        )
    body = "".join(sections) or '<p class="none">No guardrails in this plan.</p>'
    limits = [_limit(status, f) for f in drawn if f.limit is not None]
    shown = section("limits", "Limits", "".join(limits)) if limits else ""
    return section("guardrails", "Guardrails", body) + shown


def _limit(status: RolloutView, figure: Figure) -> str:
    """One limit over the rollout: the treated units' rate against it, what the gate says of
    it now (once a ring completed, at the stage the limit gated, named) and, until it is
    shown either way, what the stage's size could catch."""
    name = figure.metric
    said, at = limits_said(status.evidence, status.limits_gated)
    entry = (said.limits or {}).get(name)
    where = f"at {at}: " if at else ""
    now = f'<p class="limit-state">{esc(where + limit_reading(name, entry))}</p>' if entry else ""
    return (
        f'<figure class="limit" data-limit="{esc(name)}">{now}'
        '<div class="scroll chart-scroll" tabindex="0" role="region"'
        f' aria-label="{esc(name)} limit chart">{figure.svg()}</div>'
        f"<figcaption>{esc(figure.text())} Line: the treated units' rate; band: its"
        " always-valid bound; dashed: the limit. Not breached is not shown above: only its"
        " top at or below the limit shows the rate kept.</figcaption>"
        f"<details><summary>numbers for the {esc(name)} limit</summary>{figure.table()}"
        "</details></figure>"
    )


def _state(status: RolloutView, metric: str) -> str:
    """The guardrail's state at the gate now (or at the decision that ended the rollout), in
    the words the list, ``rolloutctl status``, the report and the alerts use; nothing when the
    evidence does not name the guardrail."""
    tests = status.evidence.guardrails or {}
    if metric not in tests:
        return ""
    test = tests[metric]
    tested = test if isinstance(test, GuardrailTest) else None  # else too few events
    compared = compares(status.evidence.comparison)
    said = esc(state_text(metric, tested, compared=compared))
    state = guardrail_state(tested, compared=compared).state.name.lower()
    return f'<p class="guardrail-state" data-state="{state}">{said}</p>'


def _widening(status: RolloutView, metric: str) -> str:
    """Why the guardrail's interval is as wide as it is at the gate now (its evidence's test):
    how much units widen it and what that costs the stage, or that it assumes independent
    requests; nothing while there is nothing to say."""
    test = (status.evidence.guardrails or {}).get(metric)
    said = widening_text(test) if isinstance(test, GuardrailTest) else ""
    return f'. <span class="widening">{esc(said[:1].upper() + said[1:])}</span>' if said else ""


def _dominant(status: RolloutView, metric: str) -> str:
    """The one bucket of units that carries most of the guardrail's variance at the gate now,
    where its evidence names one: in practice one bot or broken account decides it."""
    test = (status.evidence.guardrails or {}).get(metric)
    said = dominant_text(test) if isinstance(test, GuardrailTest) else ""
    return f'. <span class="dominant">{esc(said[:1].upper() + said[1:])}</span>' if said else ""


def _power(status: RolloutView, metric: str) -> str:
    """What the running stage can detect of this guardrail by its minimum at its current
    traffic, and how much longer it needs for a +50% regression; nothing without a figure."""
    said = running_text(status, metric)
    return f'. <span class="stage-power">{esc(said[:1].upper() + said[1:])}</span>' if said else ""


def _arms(figure: Figure) -> str:
    """Each arm's own value beside Δ, where the history records it (rates, latency)."""
    if not figure.per_arm:
        return ""
    return (
        '<div class="scroll chart-scroll" tabindex="0" role="region"'
        f' aria-label="{esc(figure.metric)} per arm">{figure.arms_svg()}</div>'
    )


def _what_broke(status: RolloutView) -> str:
    """The failures by fingerprint the gate named, the most telling first: each one's name,
    how often in each arm and one example, all the app's text, escaped; nothing when the gate
    named none."""
    named = status.evidence.failures or []
    if not named:
        return ""
    items = "".join(
        f'<li class="{"regressed" if seen.regressed else "failure"}">'
        f"<code>{esc(seen.name)}</code>: {esc(failure_shares(seen))}"
        + (f"; example: <code>{esc(seen.example)}</code>" if seen.example else "")
        + ("; <strong>regressed</strong>" if seen.regressed else "")
        + "</li>"
        for seen in named
    )
    return section("what-broke", "What broke", f'<ul class="failures">{items}</ul>')


def _sources(status: RolloutView) -> str:
    """What the gate read from Prometheus: each query as asked, escaped, and each arm's
    numbers; nothing for a plan that reads no metric source."""
    lines = source_lines(status.evidence)
    if not lines:
        return ""
    body = f'<pre class="sources">{esc(chr(10).join(lines))}</pre>'
    return section("sources", "Read from Prometheus", body)
