"""A limit's chart: the treated units' rate with its always-valid band against the limit.

A stage that serves 100% of its audience has no concurrent control: nothing is compared,
so its guardrails' Δ charts have no point there. Its gate tests the treated units' own
rates against the plan's absolute limits instead (:mod:`controller.core.stats.limits`),
and the gate history keeps each test (:class:`~controller.core.reading.history.LimitPoint`).
This chart draws them over the whole rollout: the rate as a line, its always-valid bound
as a band, the limit as a dashed line, the stages' starts and the decisions marked. The
band wholly above the line is a breach (ringed, as a guardrail's crossing is); its top at
or below the line is the rate *shown* under the limit, the only good news a limit gives.

Pure: a history read into :class:`~controller.core.reading.served_history.RolloutHistory` in, SVG
and words out. A latency limit's rate is the share of requests slower than it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from controller.console.arm_chart import share_text
from controller.console.axis import (
    HEIGHT,
    PAD_BOTTOM,
    PAD_LEFT,
    PAD_RIGHT,
    PAD_TOP,
    WIDTH,
    TimeAxis,
    clock,
    ringed,
    time_ticks,
)
from controller.console.charts import ChartPoint, Mark, _band, _line, _marks, _Scale
from controller.console.labels import LINE_PX, Label, render
from controller.core.common import html_text
from controller.core.reading import RolloutHistory, metric_name, rate_interval
from controller.core.stats import QUANTILE_SHARES

MAX_LIMITS = 8
"""A plan has at most three limits on its events; a history naming more is cut to this."""


def limit_names(history: RolloutHistory) -> list[str]:
    """The limits a history's points test, in the order they first appear."""
    seen: dict[str, None] = {}
    for point in history.points():
        for name in point.limits or {}:
            if len(seen) < MAX_LIMITS:
                seen.setdefault(name[:64])
    return list(seen)


def limit_points(history: RolloutHistory, name: str) -> list[ChartPoint]:
    """``name``'s tests in a gate history, oldest first: the rate as Δ, its band clipped at 0
    (a rate's bound below it says nothing more)."""
    names, out = history.names(), []
    for point in history.points():
        test = (point.limits or {}).get(name)
        if test is None or not 0 <= point.ts_ms < 2**53:
            continue
        lower = 0.0 if test.lower is None else max(test.lower, 0.0)
        upper = math.inf if test.upper is None else test.upper
        label = names.get(point.stage, "")
        out.append(ChartPoint(point.ts_ms, point.stage, test.rate, lower, upper, label))
    return sorted(out, key=lambda p: p.ts_ms)


def limit_of(history: RolloutHistory, name: str) -> tuple[float, float]:
    """The rate the limit allows and the plan's limit as declared, from its latest test."""
    for point in reversed(history.points()):
        test = (point.limits or {}).get(name)
        if test is not None:
            return test.ceiling, test.limit
    return 0.0, 0.0


def rate_name(name: str, declared: float) -> str:
    """What the limit's rate is: ``error rate``, ``share of requests slower than 200 ms``."""
    if name in QUANTILE_SHARES:
        return f"share of requests slower than {declared:g} ms"
    return metric_name(name.removesuffix("_ms"))


def describe_limit(
    points: Sequence[ChartPoint], ceiling: float, *, name: str, declared: float
) -> str:
    """The chart in one sentence: the latest rate and bound against the limit, and whether
    it was breached or shown under."""
    what = rate_name(name, declared)
    if not points:
        return f"{name} limit: no test yet."
    last = points[-1]
    interval, edge = rate_interval(last.delta, last.lower, last.upper, ceiling)
    said = f"{name} limit: {len(points)} points; latest {what} {interval} against at most {edge}"
    breach = next((p for p in points if p.lower > ceiling), None)
    if breach is not None:
        return f"{said}; breached at {clock(breach.ts_ms)} in {breach.stage_name}."
    if last.upper <= ceiling:
        return f"{said}; shown under it."
    return f"{said}; not shown above, nor yet under."


def limit_table(points: Sequence[ChartPoint], ceiling: float, *, limit: int = 60) -> str:
    """The chart's numbers as an HTML table: the last ``limit`` points, newest first, each
    interval on its side of the limit."""
    rows = "".join(
        f"<tr><td>{clock(p.ts_ms)}</td><td>{html_text(p.stage_name)}</td>"
        f"<td>{html_text(rate_interval(p.delta, p.lower, p.upper, ceiling)[0])}</td></tr>"
        for p in list(reversed(points))[:limit]
    )
    head = "<tr><th>time</th><th>stage</th><th>rate [anytime-valid interval]</th></tr>"
    return f'<table class="numbers"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def limit_chart(
    points: Sequence[ChartPoint],
    ceiling: float,
    *,
    name: str,
    declared: float,
    stages: Sequence[Mark] = (),
    decisions: Sequence[Mark] = (),
    width: int = WIDTH,
    height: int = HEIGHT,
    axis: TimeAxis | None = None,
) -> str:
    """An accessible SVG chart of a limit's rate and bound against the rate it allows, over
    the rollout's shared time ``axis`` when given."""
    key = "limit-" + "".join(c if c.isalnum() else "-" for c in name)[:64]
    title = f"{name}: the treated units' {rate_name(name, declared)}, with its always-valid bound"
    desc = describe_limit(points, ceiling, name=name, declared=declared)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart limit-chart"'
        f' viewBox="0 0 {width} {height}" width="100%" role="img"'
        f' aria-labelledby="t-{key} d-{key}" data-limit="{html_text(name)}"'
        f' data-ceiling="{ceiling!r}"><title id="t-{key}">{html_text(title)}</title>'
        f'<desc id="d-{key}">{html_text(desc)}</desc>'
    )
    if not points:
        text = f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">'
        return head + text + "no test yet: no stage without control has run</text></svg>"
    instants = [m.ts_ms for m in (*stages, *decisions)]
    scale = _Scale(
        points, ceiling, width, height, instants, axis=axis, fit=value_range(points, ceiling)
    )
    frame, labels = _axes(scale, ceiling)
    staged, staged_labels = _marks(stages, scale, "stage")
    decided, decided_labels = _marks(decisions, scale, "decision")
    ring, breached = _breach(points, ceiling, scale)
    labels += staged_labels + decided_labels + breached
    runs = stage_runs(points)
    body = [frame, *(_band(run, scale) for run in runs), *(_line(run, scale) for run in runs)]
    body += [staged, decided, ring]
    return head + "".join(body) + render(labels, top=0, bottom=height) + "</svg>"


HEADROOM = 1.5
"""The value axis reaches this many times the larger of the limit and the highest rate."""


def value_range(points: Sequence[ChartPoint], ceiling: float) -> tuple[float, float]:
    """The value axis: from 0 to :data:`HEADROOM` times the larger of the limit and the
    highest rate, so a 5% limit and a 2% rate fill the plot whatever the first seconds' band
    was (a bound beyond it is drawn at the edge)."""
    rates = [p.delta for p in points if math.isfinite(p.delta)]
    top = max([ceiling, *rates])
    return 0.0, HEADROOM * top if top > 0 else 0.01


def stage_runs(points: Sequence[ChartPoint]) -> list[list[ChartPoint]]:
    """``points`` cut where the stage changes: a band and a line per run of one stage, never a
    ramp drawn across a stage the limit did not test (one with a control)."""
    runs: list[list[ChartPoint]] = []
    for p in points:
        if runs and runs[-1][-1].stage == p.stage:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _axes(scale: _Scale, ceiling: float) -> tuple[str, list[Label]]:
    left, right, bottom = PAD_LEFT, scale.width - PAD_RIGHT, scale.height - PAD_BOTTOM
    y = scale.y(ceiling)
    frame = (
        f'<rect x="{left}" y="{PAD_TOP}" width="{right - left}" height="{bottom - PAD_TOP}"'
        ' class="plot" fill="none" stroke="currentColor" stroke-opacity="0.2"/>'
        f'<line class="tolerance limit" x1="{left}" x2="{right}" y1="{y}" y2="{y}"'
        f' data-value="{ceiling!r}" stroke="currentColor" stroke-dasharray="6 4"/>'
    )
    said = f"limit {share_text(ceiling)}"
    labels = [Label(left + 4, y - 4, said, "tolerance-label", rank=0, step=LINE_PX)]
    labels += [
        Label(left - 4, scale.y(value) + 4, share_text(value), "tick", "end", rank=7)
        for value in (max(scale.lo, 0.0), scale.hi)
    ]
    return frame, labels + time_ticks(scale.x, scale.t0, scale.t1, bottom)


def _breach(points: Sequence[ChartPoint], ceiling: float, scale: _Scale) -> tuple[str, list[Label]]:
    """The first point whose band lay wholly above the limit, ringed."""
    p = next((p for p in points if p.lower > ceiling), None)
    if p is None:
        return "", []
    return ringed(
        scale.x(p.ts_ms), scale.y(p.lower), p.ts_ms, p.lower, f"breached {clock(p.ts_ms)}"
    )
