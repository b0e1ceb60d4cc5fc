"""The console's pages: the list of rollouts, and the page shell around a live fragment.

Pure: the read API's view models (:mod:`controller.core.reading.views`) and the
published alerts in, HTML out. Every value that came from outside (flag
names, reasons, rationales, alert summaries) passes through :func:`esc`; the
pages load no script or style but the console's own, so a Content Security
Policy of ``'self'`` holds. Each page is a shell whose ``<main>`` the
console's script refreshes from a fragment URL, so updates arrive without a
reload and the page works (statically) with scripts off.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from controller.core.common import as_datetime, html_text, split
from controller.core.reading import (
    FINISHED,
    HistoryPoint,
    HoldoutCheck,
    LimitRead,
    RolloutRow,
    RolloutView,
    State,
    Tested,
    guardrail_state,
    holdout_line,
    limit_state_text,
    rollout_span,
    state_text,
)
from controller.core.wire import Alert

REFRESH_MS = 2000
LIST_REFRESH_MS = 5000
HEALTH_TEXT = {
    "healthy": "healthy",
    "attention": "needs attention",
    "watching": "watching",
    "undecided": "undecided",
    "failed": "failed",
    "ended": "ended",
    "done": "completed",
    "idle": "not running",
}


def esc(value: object) -> str:
    """Text for HTML content or a quoted attribute (see :mod:`controller.core.common.text`)."""
    return html_text(value)


def section(slug: str, title: str, body: str) -> str:
    """A page's section, headed ``title`` and labelled by its heading (``h-<slug>``)."""
    return f'<section aria-labelledby="h-{slug}"><h2 id="h-{slug}">{title}</h2>{body}</section>'


def flag_url(flag: str) -> str:
    return "/ui/rollouts/" + quote(flag, safe="")


def page(title: str, body: str, *, fragment: str, refresh_ms: int = REFRESH_MS) -> str:
    """A whole page: ``body`` inside ``<main>``, refreshed from ``fragment``."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · rollout console</title>"
        '<link rel="stylesheet" href="/ui/static/console.css">'
        '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">'
        '<script src="/ui/static/console.js" defer></script></head><body>'
        '<a class="skip" href="#live">Skip to content</a>'
        '<header><nav aria-label="console"><a href="/ui">Rollouts</a></nav>'
        '<p class="readonly">Read-only: steer with <code>rolloutctl</code>.</p></header>'
        f'<main id="live" tabindex="-1" data-fragment="{esc(fragment)}"'
        f' data-interval="{refresh_ms}">{body}</main>'
        '<footer><span id="updated" role="status" aria-live="polite"></span></footer>'
        "</body></html>"
    )


def message_page(title: str, text: str) -> str:
    """A plain page with no live part (sign-in needed, not found)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)}</title><link rel="stylesheet" href="/ui/static/console.css">'
        '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">'
        f"</head><body><main><h1>{esc(title)}</h1><p>{esc(text)}</p></main></body></html>"
    )


def pipeline_url(flag: str) -> str:
    return "/ui/pipelines/" + quote(flag, safe="")


def pipeline_link(flag: str) -> str:
    """A link to ``flag``'s pipeline page: every environment, its gates and approvals."""
    return (
        f'<p class="pipeline-link"><a href="{esc(pipeline_url(flag))}">'
        f"Release pipeline of {esc(flag)}: every environment</a></p>"
    )


def rollout_list(
    rows: Sequence[RolloutRow], alerts: Sequence[Alert], *, pipelines: Collection[str] = ()
) -> str:
    """The list fragment: every rollout at a glance (with a link to its flag's pipeline, where
    ``pipelines`` names the flag), then the recent alerts."""
    body = (
        "".join(_row(r, pipelines) for r in rows)
        or '<tr><td colspan="8">No rollouts yet.</td></tr>'
    )
    head = (
        '<tr><th scope="col">flag</th><th scope="col">phase</th><th scope="col">stage</th>'
        '<th scope="col">serving</th><th scope="col">time in stage</th>'
        '<th scope="col">ended</th><th scope="col">total</th>'
        '<th scope="col">health</th></tr>'
    )
    return (
        f"<h1>Rollouts <small>({len(rows)})</small></h1>"
        '<div class="scroll" tabindex="0" role="region" aria-label="rollouts">'
        f'<table class="rollouts"><thead>{head}</thead><tbody>{body}</tbody></table></div>'
        f"<h2>Recent alerts</h2>{alert_list(alerts)}"
    )


def _row(r: RolloutRow, pipelines: Collection[str]) -> str:
    note, plain = r.health_reason, split(r.flag)[0]
    linked = (
        f' <a class="pipeline-link" href="{esc(pipeline_url(plain))}">pipeline</a>'
        if plain in pipelines
        else ""
    )
    return (
        f'<tr data-flag="{esc(r.flag)}" data-phase="{esc(r.phase)}">'
        f'<th scope="row"><a href="{esc(flag_url(r.flag))}">{esc(r.flag)}</a>{linked}</th>'
        f'<td data-label="phase">{esc(phase_text(r))}</td>'
        f'<td data-label="stage">{esc(stage_text(r))}</td>'
        f'<td data-label="serving">{percent_cell(r.percent)}</td>'
        f'<td data-label="in stage">{esc(duration(r.time_in_stage_s))}</td>{_span_cells(r)}'
        f'<td data-label="health">'
        f'<span class="health {esc(r.health)}">{esc(HEALTH_TEXT.get(r.health, r.health))}</span>'
        f"{f' <small>{esc(note)}</small>' if note else ''}</td></tr>"
    )


def _span_cells(r: RolloutView) -> str:
    """When the rollout ended (``running`` while it runs) and how long it ran in all."""
    span = rollout_span(r)
    ended = clock(span.end) if span.end else ("-" if r.phase in FINISHED else "running")
    return (
        f'<td data-label="ended" class="ended">{esc(ended)}</td>'
        f'<td data-label="total" class="total">{esc(duration(span.seconds))}</td>'
    )


def alert_list(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return '<p class="none">No alerts.</p>'
    items = "".join(
        f'<li class="alert {esc(a.severity)}"><time>{esc(clock(a.ts))}</time>'
        f' <span class="sev">{esc(a.severity)}</span>'
        f" <b>{esc(a.kind)}</b>"
        f"{_alert_flag(a.flag)}: {esc(a.summary)}</li>"
        for a in alerts
    )
    return f'<ul class="alerts">{items}</ul>'


def _alert_flag(flag: str | None) -> str:
    if not flag:
        return ""
    return f' <a href="{esc(flag_url(flag))}">{esc(flag)}</a>'


def phase_text(r: RolloutView) -> str:
    if r.pause_reason:
        return f"{r.phase} ({r.pause_reason})"
    if r.watch_until:
        return f"{r.phase} (watch)"
    return r.phase


def stage_text(r: RolloutView) -> str:
    """The stage a rollout is at, as alerts, decisions, ``rolloutctl status`` and reports say it.

    ``stage 3/5 (25%)``: the stage's planned percent, which may differ from
    what is served (nothing once rolled back; less than 100% in the watch).
    """
    return r.label() or "-"


def percent_cell(value: float | None) -> str:
    """A served share of units: ``25%``; ``-`` when unknown."""
    return "-" if value is None else f"{value:g}%"


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def clock(ts: float | datetime | None) -> str:
    """A message's time (ms since the epoch, or a datetime) as HH:MM:SS UTC."""
    if ts is None:
        return "?"
    try:
        return as_datetime(ts).astimezone(UTC).strftime("%H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return "?"


def health(status: RolloutView, last: HistoryPoint | None) -> tuple[str, str]:
    """A rollout's health at a glance, with the reason: from its phase and last gate point.

    ``failed``: rolled back or killed, with the reason of the decision that ended it (the
    guardrail and its interval, for the gate's); ``ended``: aborted by an operator, which
    says nothing against the flag, so it is neutral; ``attention``: paused, a
    guardrail regressed or whose always-valid p-value is below 0.05 (harm building), a limit
    breached, a sample-ratio p below 0.01, or the plan's holdout with no held-out unit where
    some were expected (its cohort missing, in the words of ``rolloutctl status`` and the
    rollout's page, though the rollout's own arms' ratio reads ok); ``watching``: a
    guardrail's Δ or a limit's rate past its edge, not yet significant (its state,
    :func:`~controller.core.reading.guardrail_state`); ``undecided``: one not yet tested,
    or with harm not yet excluded (only ``holds`` is good news); ``done``: completed; else
    ``healthy``: every test holds.
    """
    phase = status.phase
    if phase in ("rolled_back", "killed"):
        ended = phase.replace("_", " ")
        return "failed", f"{ended}: {status.verdict_reason}" if status.verdict_reason else ended
    if phase == "aborted":
        return "ended", "aborted"
    if phase == "paused":
        return "attention", f"paused: {status.pause_reason or 'operator'}"
    if phase == "running":
        return _running_health(last, status.holdout)
    return ("done", "") if phase == "completed" else ("idle", "")


_UNSETTLED = {State.WATCHING: "watching", State.UNDECIDED: "undecided", State.UNTESTED: "undecided"}
"""The health of a test neither regressed nor holding, by its state."""


def _running_health(
    last: HistoryPoint | None, holdout: HoldoutCheck | None = None
) -> tuple[str, str]:
    """Each guardrail is named in the words of its state (``error rate watching (above
    tolerance, not yet significant)``), each limit in its own (``error_rate: 1.4% [0, 2.9%]
    against its limit 5%, not shown above, nor yet under``), as the rollout's page and
    ``rolloutctl status`` say them. At a stage gated on its limits, they alone are read.
    A missing holdout cohort comes after harm, before what is not yet settled."""
    missing = _cohort_missing(holdout)
    if last is None:
        return missing or ("healthy", "")
    limits = last.limits or {}
    tests: Mapping[str, Tested | None] = {} if limits else last.guardrails  # no comparison
    said = {name: state_text(name, test) for name, test in tests.items()}
    tested = {
        n: LimitRead(p.rate, p.lower, p.upper, p.ceiling, p.regressed) for n, p in limits.items()
    }
    said |= {name: limit_state_text(name, tested[name], limits[name].limit) for name in limits}
    read = {**tests, **tested}
    return _harm(last, said) or missing or _unsettled(read, said) or ("healthy", "")


def _cohort_missing(holdout: HoldoutCheck | None) -> tuple[str, str] | None:
    """``attention`` with the holdout's line when the plan's holdout has no held-out unit
    where some were expected (the apps may not report cohort holdout); None otherwise."""
    if holdout is None or not holdout.missing:
        return None
    return "attention", holdout_line(holdout)


def _harm(last: HistoryPoint, said: Mapping[str, str]) -> tuple[str, str] | None:
    """Harm shown or building: a guardrail regressed or below p 0.05, a limit breached, the
    sample ratio off; None when none is."""
    limits = last.limits or {}
    for metric, test in ({} if limits else last.guardrails).items():
        if test is not None and (test.regressed or test.p_value < 0.05):
            return "attention", f"{said[metric]}, p = {test.p_value:.2g}"
    breached = next((name for name, point in limits.items() if point.regressed), None)
    if breached is not None:
        return "attention", said[breached]
    if last.srm_p < 0.01:
        return "attention", f"sample ratio p = {last.srm_p:.2g}"
    return None


def _unsettled(
    read: Mapping[str, Tested | None], said: Mapping[str, str]
) -> tuple[str, str] | None:
    """The first test watched, else the first not yet settled (untested or undecided)."""
    for health in ("watching", "undecided"):
        for name, test in read.items():
            if _UNSETTLED.get(guardrail_state(test).state) == health:
                return health, said[name]
    return None
