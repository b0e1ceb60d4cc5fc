"""Guardrail charts as server-rendered SVG: Δ over time with its confidence sequence.

Pure: points in, an SVG string out. Rendering on the server needs no
JavaScript build and no chart library in the browser, works offline, and the
same function draws the charts of the console and of a report written to a
file. Every chart carries its text equivalent (``<title>`` and ``<desc>`` for
screen readers); :func:`chart_table` gives the numbers as a table.

What a chart shows: the always-valid bound as a band, Δ (treatment minus
control) as a line, zero, the tolerance as a dashed line, stage boundaries as
labelled vertical lines, decisions as marks on the time axis, and the first
point where the bound lay wholly beyond the tolerance (the crossing) as a
ringed dot. The drawing carries ``data-`` attributes (``data-ts`` in ms,
``data-value``) so tests can check what it shows against the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.console.axis import (
    HEIGHT,
    PAD_BOTTOM,
    PAD_LEFT,
    PAD_RIGHT,
    PAD_TOP,
    WIDTH,
    TimeAxis,
    clock,
    mark_line,
    ringed,
    time_ticks,
)
from controller.console.labels import CHAR_PX, LINE_PX, Label, render
from controller.core.common import html_text
from controller.core.reading import (
    Collecting,
    HistoryPoint,
    RolloutHistory,
    amount_text,
    limit_text,
    quantity_text,
    stage_label,
)

MAX_POINTS = 5_000
"""The most points one chart draws (the latest): far more than a served history holds
(a stage keeps about 200 an hour)."""


@dataclass(frozen=True, slots=True)
class ChartPoint:
    """One gate's test of one guardrail: when, in which stage, Δ and its bound."""

    ts_ms: int
    stage: int
    delta: float
    lower: float
    upper: float
    label: str = ""
    """The stage in words (``stage 3/5 (25%)``); empty: counted from 1 without the plan."""

    @property
    def stage_name(self) -> str:
        return self.label or stage_label(self.stage)


@dataclass(frozen=True, slots=True)
class Mark:
    """A labelled instant on the time axis: a stage boundary or a decision."""

    ts_ms: int
    label: str


def chart_points(history: RolloutHistory, metric: str) -> list[ChartPoint]:
    """``metric``'s points in a gate history (``/rollouts/{flag}/history``), oldest first.

    A point whose test of ``metric`` has no finite Δ or a NaN bound is left
    out, and at most :data:`MAX_POINTS` are kept, the latest.
    """
    out = []
    names = history.names()
    for point in history.points():
        parsed = _chart_point(point, metric, names)
        if parsed is not None:
            out.append(parsed)
    return sorted(out, key=lambda p: p.ts_ms)[-MAX_POINTS:]


def _chart_point(point: HistoryPoint, metric: str, names: Mapping[int, str]) -> ChartPoint | None:
    test = point.guardrails.get(metric)
    if test is None or point.limits or not (_whole(point.ts_ms) and _whole(point.stage)):
        return None  # none yet, or a stage without control, gated on its limits alone
    delta, lower, upper = (_number(v) for v in (test.delta, test.lower, test.upper))
    if not math.isfinite(delta) or math.isnan(lower) or math.isnan(upper):
        return None
    return ChartPoint(point.ts_ms, point.stage, delta, lower, upper, names.get(point.stage, ""))


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def _whole(value: int) -> bool:
    return 0 <= value < 2**53


def crossing(points: Sequence[ChartPoint], tolerance: float, *, lower_is_better: bool) -> int:
    """Index of the first point whose bound lies wholly beyond the tolerance; -1 if none."""
    for i, p in enumerate(points):
        if (p.lower > tolerance) if lower_is_better else (p.upper < -tolerance):
            return i
    return -1


def guardrail_chart(
    points: Sequence[ChartPoint],
    tolerance: float,
    *,
    metric: str,
    lower_is_better: bool = True,
    stages: Sequence[Mark] = (),
    decisions: Sequence[Mark] = (),
    width: int = WIDTH,
    height: int = HEIGHT,
    empty: str = "no data yet",
    axis: TimeAxis | None = None,
    collecting: Sequence[Collecting] = (),
) -> str:
    """An accessible SVG chart of ``metric``'s Δ and bound against ``tolerance``.

    ``tolerance`` is absolute and non-negative: harm is Δ above it when lower
    is better, below minus it when higher is better. ``stages`` marks where
    each stage began and ``decisions`` when a decision was taken; ``axis`` is
    the time span the rollout's other charts share (default: the points' and
    marks'); ``collecting`` shades and labels each stage's start before the
    guardrail had data.
    """
    limit = tolerance if lower_is_better else -tolerance
    title = f"{metric}: treatment minus control, with its always-valid bound"
    desc = describe(points, tolerance, metric=metric, lower_is_better=lower_is_better, empty=empty)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}"'
        f' width="100%" role="img" aria-labelledby="t-{_id(metric)} d-{_id(metric)}"'
        f' data-metric="{html_text(metric)}" data-tolerance="{limit!r}">'
        f'<title id="t-{_id(metric)}">{html_text(title)}</title>'
        f'<desc id="d-{_id(metric)}">{html_text(desc)}</desc>'
    )
    if not points:
        text = f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">'
        return head + text + f"{html_text(empty)}</text></svg>"
    scale = _Scale(
        points, limit, width, height, [m.ts_ms for m in (*stages, *decisions)], axis=axis
    )
    frame, labels = _axes(scale, limit, metric)
    shade, waiting = _collecting(collecting, scale)
    staged, staged_labels = _marks(stages, scale, "stage")
    decided, decided_labels = _marks(decisions, scale, "decision")
    ring, crossed = _crossing(points, tolerance, lower_is_better, scale)
    labels += waiting + staged_labels + decided_labels + crossed
    body = [shade, frame, _band(points, scale), _line(points, scale), staged, decided, ring]
    return head + "".join(body) + render(labels, top=0, bottom=height) + "</svg>"


def describe(
    points: Sequence[ChartPoint],
    tolerance: float,
    *,
    metric: str,
    lower_is_better: bool,
    empty: str = "no data yet",
) -> str:
    """The chart in one sentence, for screen readers and text views; ``empty`` without a
    point."""
    if not points:
        return f"{metric}: {empty}."
    last = points[-1]
    side = "above" if lower_is_better else "below"
    limit = tolerance if lower_is_better else -tolerance
    # The latest interval and the tolerance in the same digits, each on its side of the other.
    latest = quantity_text(metric, last.delta, last.lower, last.upper, limit=limit)
    edge = limit_text(metric, limit, last.delta, last.lower, last.upper, sign=True)
    text = (
        f"{metric}: {len(points)} points; latest {latest}; harm is the interval wholly {side}"
        f" the tolerance {edge if limit else '0'}."
    )
    index = crossing(points, tolerance, lower_is_better=lower_is_better)
    if index < 0:
        return text + " The interval has not crossed the tolerance."
    p = points[index]
    return text + f" The interval crossed the tolerance at {clock(p.ts_ms)} in {p.stage_name}."


def chart_table(
    points: Sequence[ChartPoint],
    *,
    metric: str = "",
    limit: int = 60,
    edge: float | None = None,
) -> str:
    """The chart's numbers as an HTML table: the last ``limit`` points, newest first, each
    rounded to keep its side of the tolerance's signed ``edge``, when given."""
    rows = "".join(
        f"<tr><td>{clock(p.ts_ms)}</td><td>{html_text(p.stage_name)}</td>"
        f"<td>{html_text(_numbers(metric, p, edge))}</td></tr>"
        for p in list(reversed(points))[:limit]
    )
    head = "<tr><th>time</th><th>stage</th><th>Δ [anytime-valid interval]</th></tr>"
    return f'<table class="numbers"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _numbers(metric: str, p: ChartPoint, edge: float | None) -> str:
    return quantity_text(metric, p.delta, p.lower, p.upper, named=False, limit=edge)


def tolerance_text(metric: str, limit: float) -> str:
    """A signed value on the chart's axis in the metric's unit: ``+2.0 pp``, ``-1.5``."""
    return f"{'-' if limit < 0 else '+'}{amount_text(metric, limit)}" if limit else "0"


class _Scale:
    """Data to pixels: time on x, value on y; bounds far off the scale are clipped."""

    def __init__(
        self,
        points: Sequence[ChartPoint],
        limit: float,
        width: int,
        height: int,
        instants: Iterable[int],
        *,
        axis: TimeAxis | None = None,
        fit: tuple[float, float] | None = None,
    ) -> None:
        times = [p.ts_ms for p in points] + list(instants)
        self.axis = axis or TimeAxis.over(times) or TimeAxis(0, 1000)
        self.t0, self.t1 = self.axis.t0, self.axis.t1
        self.width, self.height = width, height
        if fit is not None:  # the caller's range: what lies beyond it is drawn at the edge
            self.lo, self.hi = fit
            return
        # Both sides of the band in view, the harm side included, with zero and the
        # tolerance: an infinite bound is drawn at the edge.
        values = [0.0, limit] + [
            v for p in points for v in (p.delta, p.lower, p.upper) if math.isfinite(v)
        ]
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.05 or abs(limit) * 0.05 or 5e-5
        self.lo, self.hi = lo - pad, hi + pad

    def x(self, ts_ms: int) -> float:
        return self.axis.x(ts_ms, self.width)

    def y(self, value: float) -> float:
        value = min(max(value, self.lo), self.hi)  # infinities at the edge
        share = (value - self.lo) / (self.hi - self.lo)
        return round(self.height - PAD_BOTTOM - share * (self.height - PAD_TOP - PAD_BOTTOM), 1)


def _axes(scale: _Scale, limit: float, metric: str) -> tuple[str, list[Label]]:
    """The plot's frame, zero and the tolerance as lines; their words and the ticks as labels
    (the tolerance's first: it must stay in view)."""
    left, right = PAD_LEFT, scale.width - PAD_RIGHT
    bottom = scale.height - PAD_BOTTOM
    out = [
        f'<rect x="{left}" y="{PAD_TOP}" width="{right - left}" height="{bottom - PAD_TOP}"'
        ' class="plot" fill="none" stroke="currentColor" stroke-opacity="0.2"/>'
    ]
    for value, cls in ((0.0, "zero"), (limit, "tolerance")):
        y = scale.y(value)
        dash = ' stroke-dasharray="6 4"' if cls == "tolerance" else ""
        out.append(
            f'<line class="{cls}" x1="{left}" x2="{right}" y1="{y}" y2="{y}"'
            f' data-value="{value!r}" stroke="currentColor"{dash}/>'
        )
    said = f"tolerance {tolerance_text(metric, limit)}"
    y = scale.y(limit)
    labels = [Label(left + 4, y - 4, said, "tolerance-label", rank=0, step=LINE_PX)]
    if limit:  # else the tolerance's label says it
        labels.append(Label(left - 4, scale.y(0.0) + 4, "0", "tick", "end", rank=1))
    labels += [
        Label(left - 4, scale.y(v) + 4, tolerance_text(metric, v), "tick", "end", rank=7)
        for v in (scale.lo, scale.hi)
    ]
    return "".join(out), labels + time_ticks(scale.x, scale.t0, scale.t1, bottom)


def _band(points: Sequence[ChartPoint], scale: _Scale) -> str:
    upper = [f"{scale.x(p.ts_ms)},{scale.y(p.upper)}" for p in points]
    lower = [f"{scale.x(p.ts_ms)},{scale.y(p.lower)}" for p in reversed(points)]
    return (
        f'<polygon class="bound" points="{" ".join(upper + lower)}"'
        ' fill="currentColor" fill-opacity="0.18" stroke="none"/>'
    )


def _line(points: Sequence[ChartPoint], scale: _Scale) -> str:
    path = " ".join(f"{scale.x(p.ts_ms)},{scale.y(p.delta)}" for p in points)
    dots = "".join(
        f'<circle class="point" cx="{scale.x(p.ts_ms)}" cy="{scale.y(p.delta)}" r="1.6"'
        f' data-ts="{p.ts_ms}" data-lower="{p.lower!r}" data-upper="{p.upper!r}"/>'
        for p in points
    )
    return (
        f'<polyline class="delta" points="{path}" fill="none" stroke="currentColor"'
        f' stroke-width="1.5"/>{dots}'
    )


def _marks(marks: Sequence[Mark], scale: _Scale, cls: str) -> tuple[str, list[Label]]:
    """Vertical lines; stage labels along the top, decision labels along the bottom.

    A label starts at its line (it names what begins there) unless it would run off the
    plot; a label in another's way moves a row inwards (:func:`controller.console.labels.layout`).
    """
    lines, labels = [], []
    top, bottom = PAD_TOP + 12, scale.height - PAD_BOTTOM - 4
    for mark in sorted(marks, key=lambda m: m.ts_ms):
        x, right = scale.x(mark.ts_ms), scale.width - PAD_RIGHT
        span = CHAR_PX * len(mark.label)
        anchor, at = ("start", x + 3) if x + 3 + span <= right else ("end", x - 3)
        lines.append(mark_line(mark.ts_ms, scale.x, scale.height, cls))
        y, step, rank = (top, LINE_PX, 4) if cls == "stage" else (bottom, -LINE_PX, 5)
        labels.append(Label(round(at, 1), y, mark.label, f"{cls}-label", anchor, rank, step))
    return "".join(lines), labels


def _collecting(gaps: Sequence[Collecting], scale: _Scale) -> tuple[str, list[Label]]:
    """Each stage's start before the guardrail had data, shaded and labelled with the units
    seen by then: the gap reads as waiting, not as missing data."""
    shades, labels = [], []
    height = scale.height - PAD_TOP - PAD_BOTTOM
    for gap in gaps:
        left, right = scale.x(gap.start_ms), scale.x(gap.end_ms)
        shades.append(
            f'<rect class="collecting" x="{left}" y="{PAD_TOP}" width="{round(right - left, 1)}"'
            f' height="{height}" data-ts="{gap.start_ms}" data-units="{gap.units}"'
            ' fill="currentColor" fill-opacity="0.06" stroke="none"/>'
        )
        middle = PAD_TOP + height / 2
        labels.append(
            Label(
                left + 3,
                middle,
                gap.text(),
                "collecting-label",
                rank=3,
                step=LINE_PX,
                both_ways=True,
            )
        )
    return "".join(shades), labels


def _crossing(
    points: Sequence[ChartPoint], tolerance: float, lower_is_better: bool, scale: _Scale
) -> tuple[str, list[Label]]:
    index = crossing(points, tolerance, lower_is_better=lower_is_better)
    if index < 0:
        return "", []
    p = points[index]
    bound = p.lower if lower_is_better else p.upper
    return ringed(scale.x(p.ts_ms), scale.y(bound), p.ts_ms, bound, f"crossed {clock(p.ts_ms)}")


def _id(metric: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in metric)[:96]
