"""Each arm's own value over time: the chart beside a guardrail's Δ chart.

Δ alone hides whether treatment got worse or control got better; this chart
draws both arms' values as the gate history recorded them at each gate (so
each value is the arm's so far in its stage), with the start of each stage
marked. Rates come from the recorded counts: errors per request and
conversions per exposure. A latency quantile (p95, p99) comes from each arm's
quantiles the gate saw, which points keep since they were recorded; for
conversion value the history keeps no per-arm value, and the chart says so.
Pure: a history read into :class:`~controller.core.reading.served_history.RolloutHistory` in,
SVG out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.console.axis import (
    HEIGHT,
    PAD_BOTTOM,
    PAD_LEFT,
    PAD_RIGHT,
    PAD_TOP,
    WIDTH,
    TimeAxis,
    mark_line,
    time_ticks,
)
from controller.console.charts import Mark
from controller.console.labels import LINE_PX, Label, render
from controller.core.common import html_text
from controller.core.reading import HistoryPoint, RolloutHistory, decimals_for, metric_name

RATES = {"error_rate": ("errors", "requests"), "conversion_rate": ("conversions", "exposures")}
"""The metrics whose per-arm value the recorded counts give: part over whole."""
LATENCY = {"latency_p50": "p50", "latency_p95": "p95", "latency_p99": "p99"}
"""The metrics whose per-arm value is a recorded latency quantile, by its name."""
MAX_LATENCY_MS = 3_600_000.0
"""No latency the histogram holds is longer: a value beyond it is not drawn."""
ARMS = ("treatment", "control")


@dataclass(frozen=True, slots=True)
class ArmPoint:
    """Both arms' values at one recorded gate: rates (shares) or latency in ms."""

    ts_ms: int
    treatment: float
    control: float


def arm_points(history: RolloutHistory, metric: str) -> list[ArmPoint]:
    """Each recorded gate's per-arm value of ``metric``, oldest first; none for other metrics."""
    if metric in RATES:
        read = (_point(point, metric) for point in history.points())
    elif metric in LATENCY:
        read = (_latency_point(point, LATENCY[metric]) for point in history.points())
    else:
        return []
    return sorted((p for p in read if p is not None), key=lambda p: p.ts_ms)


def share_text(value: float) -> str:
    """A rate as people write it: ``2.0%``, ``0.35%``; ``-`` when not a number."""
    if not math.isfinite(value):
        return "-"
    percent = value * 100
    return f"{percent:.{decimals_for(abs(percent))}f}%"


def ms_text(value: float) -> str:
    """A latency as people write it: ``120 ms``, ``2.5 ms``; ``-`` when not a number."""
    if not math.isfinite(value):
        return "-"
    return f"{value:.{decimals_for(abs(value))}f} ms"


def value_text(value: float, metric: str) -> str:
    """``metric``'s per-arm value in its unit: ms for a latency quantile, else a share."""
    return ms_text(value) if metric in LATENCY else share_text(value)


def arm_text(points: Sequence[ArmPoint], metric: str) -> str:
    """The chart in one sentence: the latest value of each arm."""
    name = metric_name(metric)
    if metric not in RATES and metric not in LATENCY:
        return f"{name}: the gate history keeps no per-arm value of this metric."
    if not points:
        return f"{name} per arm: no data yet."
    last = points[-1]
    return (
        f"{name} per arm, so far in each stage: latest treatment"
        f" {value_text(last.treatment, metric)}, control {value_text(last.control, metric)}."
    )


def arm_chart(
    points: Sequence[ArmPoint],
    *,
    metric: str,
    stages: Sequence[Mark] = (),
    width: int = WIDTH,
    height: int = HEIGHT,
    empty: str = "no per-arm data",
    axis: TimeAxis | None = None,
) -> str:
    """An accessible SVG chart of each arm's value over time, in % (rates) or ms (latency),
    over the rollout's shared time ``axis`` when given."""
    head = _head(points, metric, width, height)
    if not points:
        text = f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" class="empty">'
        return head + text + f"{html_text(empty)}</text></svg>"
    scale = _ArmScale.of(points, width, height, axis)
    ticks = (value_text(0.0, metric), value_text(scale.top, metric))
    frame, labels = _frame(width, height, ticks, scale.top, scale.y)
    parts = [head, frame]
    parts += (_arm_line(points, arm, scale) for arm in ARMS)
    parts += (
        mark_line(mark.ts_ms, scale.x, height, "stage")
        for mark in stages
        if scale.t0 <= mark.ts_ms <= scale.t1
    )
    labels += [_arm_label(points[-1], arm, scale, metric) for arm in ARMS]
    labels += time_ticks(scale.x, scale.t0, scale.t1, height - PAD_BOTTOM)
    return "".join(parts) + render(labels, top=0, bottom=height) + "</svg>"


def _head(points: Sequence[ArmPoint], metric: str, width: int, height: int) -> str:
    """The chart's opening tag, its title and its one-sentence description."""
    key = "".join(c if c.isalnum() else "-" for c in metric)[:96]
    title = f"{metric_name(metric)}: each arm's own value over time"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="arms-chart"'
        f' viewBox="0 0 {width} {height}" width="100%" role="img"'
        f' aria-labelledby="ta-{key} da-{key}" data-metric="{html_text(metric)}">'
        f'<title id="ta-{key}">{html_text(title)}</title>'
        f'<desc id="da-{key}">{html_text(arm_text(points, metric))}</desc>'
    )


@dataclass(frozen=True, slots=True)
class _ArmScale:
    """Data to pixels: time on x, from 0 to a little above the highest value on y."""

    t0: int
    t1: int
    top: float
    width: int
    height: int

    @classmethod
    def of(
        cls, points: Sequence[ArmPoint], width: int, height: int, axis: TimeAxis | None
    ) -> _ArmScale:
        span = axis or TimeAxis.over(p.ts_ms for p in points) or TimeAxis(0, 1000)
        top = max(max(p.treatment, p.control) for p in points) * 1.1 or 0.01
        return cls(span.t0, span.t1, top, width, height)

    def x(self, ts: int) -> float:
        return TimeAxis(self.t0, self.t1).x(ts, self.width)

    def y(self, value: float) -> float:
        share = min(max(value / self.top, 0.0), 1.0)
        return round(self.height - PAD_BOTTOM - share * (self.height - PAD_TOP - PAD_BOTTOM), 1)


def _arm_line(points: Sequence[ArmPoint], arm: str, scale: _ArmScale) -> str:
    """One arm's line (control dashed, to tell them apart without colour)."""
    x, y = scale.x, scale.y
    path = " ".join(f"{x(p.ts_ms)},{y(getattr(p, arm))}" for p in points)
    dash = "" if arm == "treatment" else ' stroke-dasharray="6 3"'
    return (
        f'<polyline class="arm {arm}" points="{path}" fill="none" stroke="currentColor"'
        f' stroke-width="2"{dash}/>'
    )


def _arm_label(last: ArmPoint, arm: str, scale: _ArmScale, metric: str) -> Label:
    """An arm's latest value at its line's end; the two arms' labels, often at one height,
    are moved apart by a row (treatment's placed first)."""
    value = getattr(last, arm)
    said = f"{arm} {value_text(value, metric)}"
    at, y = scale.x(last.ts_ms) - 4, scale.y(value) - 6
    rank = 1 if arm == "treatment" else 2
    return Label(at, y, said, f"arm-label {arm}", "end", rank, LINE_PX, both_ways=True)


def _frame(
    width: int, height: int, ticks: tuple[str, str], top: float, y: Callable[[float], float]
) -> tuple[str, list[Label]]:
    left, right = PAD_LEFT, width - PAD_RIGHT
    frame = (
        f'<rect x="{left}" y="{PAD_TOP}" width="{right - left}"'
        f' height="{height - PAD_TOP - PAD_BOTTOM}" class="plot" fill="none"'
        ' stroke="currentColor" stroke-opacity="0.2"/>'
    )
    labels = [
        Label(left - 4, y(value) + 4, tick, "tick", "end", rank=3)
        for value, tick in zip((0.0, top), ticks, strict=True)
    ]
    return frame, labels


def _point(point: HistoryPoint, metric: str) -> ArmPoint | None:
    if not _count(point.ts_ms) or point.limits:  # a stage without control: no arms to compare
        return None
    part, whole = RATES[metric]
    rates = []
    for arm in ARMS:
        counts = point.arms.get(arm)
        if counts is None:
            return None
        numerator, denominator = getattr(counts, part), getattr(counts, whole)
        if not (_count(numerator) and _count(denominator)) or denominator == 0:
            return None
        rates.append(min(numerator / denominator, 1.0))
    return ArmPoint(point.ts_ms, rates[0], rates[1])


def _latency_point(point: HistoryPoint, quantile: str) -> ArmPoint | None:
    if not _count(point.ts_ms) or not point.latency or point.limits:
        return None
    values = []
    for arm in ARMS:
        quantiles = point.latency.get(arm)
        value = None if quantiles is None else getattr(quantiles, quantile)
        if value is None or not 0.0 <= value <= MAX_LATENCY_MS:
            return None  # an arm without requests yet: nothing to compare
        values.append(value)
    return ArmPoint(point.ts_ms, values[0], values[1])


def _count(value: int) -> bool:
    return 0 <= value < 2**53
