"""One figure per guardrail from a served gate history: the charts the console and reports draw.

Pure. A figure is one guardrail over the whole rollout: Δ with its
always-valid bound, the tolerance and the crossing
(:func:`controller.console.charts.guardrail_chart`), the start of each stage
and the decisions marked on the time axis, its description in words and its
numbers as a table. The console's rollout page and ``rolloutctl report --html``
both build theirs with :func:`figures`, so they draw the same chart of a
rollout, and stages are named as every other output names them
(``stage 3/5 (25%)``). The history may come over the network (a report), so
it is read defensively: what has the wrong shape is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.console.arm_chart import RATES, ArmPoint, arm_chart, arm_points, arm_text
from controller.console.charts import (
    HEIGHT,
    WIDTH,
    ChartPoint,
    Mark,
    chart_points,
    chart_table,
    crossing,
    describe,
    guardrail_chart,
    served_number,
    served_points,
    served_stages,
    stage_names,
)
from controller.console.pages import ts_ms

MAX_FIGURES = 20
"""A plan has a handful of guardrails; a history naming more is cut to this many."""
MARK_SLACK_MS = 60_000
"""Decisions up to this long before or after a chart's points are marked on it."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One guardrail's chart over a rollout, with what it needs to be drawn and described."""

    metric: str
    points: tuple[ChartPoint, ...]
    tolerance: float
    """Absolute and non-negative: harm is the bound wholly beyond it on the harmful side."""
    lower_is_better: bool
    stages: tuple[Mark, ...] = ()
    decisions: tuple[Mark, ...] = ()
    dry_run: bool = False
    arms: tuple[ArmPoint, ...] = ()
    """Each arm's own value at each gate, where the history records it (rates)."""

    def svg(self, *, width: int = WIDTH, height: int = HEIGHT) -> str:
        """The chart as inline SVG (its text equivalent inside)."""
        return guardrail_chart(
            self.points,
            self.tolerance,
            metric=self.metric,
            lower_is_better=self.lower_is_better,
            stages=self.stages,
            decisions=self.decisions,
            width=width,
            height=height,
        )

    def arms_svg(self, *, width: int = WIDTH, height: int = HEIGHT) -> str:
        """Each arm's own value over time, as inline SVG: the chart beside Δ's."""
        return arm_chart(
            self.arms, metric=self.metric, stages=self.stages, width=width, height=height
        )

    @property
    def per_arm(self) -> bool:
        """Whether the history records this metric's value per arm (rates), to chart it."""
        return self.metric in RATES

    def arms_text(self) -> str:
        """The per-arm chart in one sentence."""
        return arm_text(self.arms, self.metric)

    def text(self) -> str:
        """The chart in one sentence: latest Δ and bound, and when it crossed, if it did."""
        return describe(
            self.points, self.tolerance, metric=self.metric, lower_is_better=self.lower_is_better
        )

    def table(self, *, limit: int = 60) -> str:
        """The chart's numbers, newest first, as an HTML table."""
        return chart_table(self.points, metric=self.metric, limit=limit)

    @property
    def crossed(self) -> ChartPoint | None:
        """The first point whose bound lay wholly beyond the tolerance, if one did."""
        index = crossing(self.points, self.tolerance, lower_is_better=self.lower_is_better)
        return self.points[index] if index >= 0 else None


def figures(
    history: Mapping[str, Any],
    decisions: Iterable[Mapping[str, Any]] = (),
    guardrails: Sequence[Mapping[str, Any]] | None = None,
) -> list[Figure]:
    """One figure per guardrail of the plan (``guardrails``), else per metric the history names.

    ``guardrails`` are the plan's (``metric``, ``tolerance``, ``lower_is_better``,
    ``dry_run``); a report has no plan, so its figures follow the history, whose
    points name every guardrail of the plan (those without data as ``null``).
    """
    specs = guardrails if guardrails is not None else [{"metric": m} for m in metrics(history)]
    starts = tuple(stage_marks(history))
    decided = decision_marks(decisions)
    out = []
    for spec in specs[:MAX_FIGURES]:
        metric = str(spec.get("metric", ""))[:64]
        points = tuple(chart_points(history, metric))
        tolerance, lower_is_better = tolerance_of(history, metric, spec)
        marks = tuple(m for m in decided if _within(m, points))
        dry_run = spec.get("dry_run") is True
        arms = tuple(arm_points(history, metric))
        out.append(Figure(metric, points, tolerance, lower_is_better, starts, marks, dry_run, arms))
    return out


def metrics(history: Mapping[str, Any]) -> list[str]:
    """The guardrails a served history's points name, in the order they first appear."""
    seen: dict[str, None] = {}
    for point in _points(history):
        tests = point.get("guardrails")
        for metric in tests if isinstance(tests, Mapping) else ():
            if isinstance(metric, str) and len(seen) < MAX_FIGURES:
                seen.setdefault(metric[:64])
    return list(seen)


def stage_marks(history: Mapping[str, Any]) -> list[Mark]:
    """Where each stage after the first began (its first recorded gate), named in words."""
    names = stage_names(history)
    marks = []
    for entry in served_stages(history):
        index = entry.get("stage")
        first = min(_times(entry), default=None)
        if first is not None and isinstance(index, int) and index > 0 and index in names:
            marks.append(Mark(first, names[index]))
    return marks


def decision_marks(decisions: Iterable[Mapping[str, Any]]) -> list[Mark]:
    """The decisions that acted (or were the gate's), as marks named by their action."""
    marks = []
    for d in decisions:
        acted = d.get("kind") == "gate" or d.get("outcome") == "applied"
        if acted and (ms := ts_ms(d.get("ts"))) is not None:
            marks.append(Mark(ms, str(d.get("action", ""))[:32]))
    return marks


def tolerance_of(
    history: Mapping[str, Any], metric: str, guardrail: Mapping[str, Any]
) -> tuple[float, bool]:
    """The absolute tolerance and direction the latest test of ``metric`` used.

    Without any test in the history, the plan's (``guardrail``), else zero and
    lower is better.
    """
    for point in reversed(list(_points(history))):
        tests = point.get("guardrails")
        test = tests.get(metric) if isinstance(tests, Mapping) else None
        if isinstance(test, Mapping):
            tolerance = served_number(test.get("tolerance"))
            if math.isfinite(tolerance):
                return abs(tolerance), test.get("direction") != "higher_is_better"
    planned = served_number(guardrail.get("tolerance", 0.0))
    lower_is_better = guardrail.get("lower_is_better", True) is not False
    return (abs(planned) if math.isfinite(planned) else 0.0), lower_is_better


def _points(history: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for entry in served_stages(history):
        for point in served_points(entry):
            if isinstance(point, Mapping):
                yield point


def _times(entry: Mapping[str, Any]) -> list[int]:
    return [
        ts
        for p in served_points(entry)
        if isinstance(p, Mapping)
        and isinstance(ts := p.get("ts_ms"), int)
        and not isinstance(ts, bool)
        and ts >= 0
    ]


def _within(mark: Mark, points: Sequence[ChartPoint]) -> bool:
    """Only decisions of this rollout's charted span (give or take a minute) are marked."""
    if not points:
        return False
    return points[0].ts_ms - MARK_SLACK_MS <= mark.ts_ms <= points[-1].ts_ms + MARK_SLACK_MS
