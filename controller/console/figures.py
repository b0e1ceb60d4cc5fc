"""One figure per guardrail from a served gate history: the charts the console and reports draw.

Pure. A figure is one guardrail over the whole rollout: Δ with its
always-valid bound, the tolerance and the crossing
(:func:`controller.console.charts.guardrail_chart`), the start of each stage
and the decisions marked on the time axis, its description in words and its
numbers as a table. The console's rollout page and ``rolloutctl report --html``
both build theirs with :func:`figures`, so they draw the same chart of a
rollout, and stages are named as every other output names them
(``stage 3/5 (25%)``). The history is a
:class:`~controller.core.reading.served_history.RolloutHistory`: the console's own, or one a
report read over the network (:meth:`~controller.core.reading.served_history.RolloutHistory.read`
leaves out what breaks the contract).

A stage with no concurrent control compares nothing: its gate tests the treated units
against the plan's absolute limits, and :func:`figures` adds one figure per limit the
history tests (``limit``: the plan's limit as declared), drawn by
:mod:`controller.console.limit_chart` over the same rollout with the same marks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.console.arm_chart import RATES, ArmPoint, arm_chart, arm_points, arm_text
from controller.console.axis import HEIGHT, WIDTH, TimeAxis
from controller.console.charts import (
    ChartPoint,
    Mark,
    chart_points,
    chart_table,
    crossing,
    describe,
    guardrail_chart,
)
from controller.console.limit_chart import (
    describe_limit,
    limit_chart,
    limit_names,
    limit_of,
    limit_points,
    limit_table,
)
from controller.core.common import as_datetime
from controller.core.reading import Collecting, RolloutHistory, collecting
from controller.core.wire import Decision

MAX_FIGURES = 20
"""A plan has a handful of guardrails; a history naming more is cut to this many."""
MAX_KEY_CHARS = 96
"""A guardrail's key is kept to this many characters (``conversion_value:`` and a 64-character
conversion name fit)."""
NOT_COMPARED = "no comparison: a stage without control is gated on its limits (below)"
"""What a guardrail's empty chart says where the rollout's only stages so far had no
control."""
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
    """Each arm's own value at each gate, where the history records it (rates, latency)."""
    limit: float | None = None
    """A limit's figure: the plan's limit as declared (the rate it allows is the
    ``tolerance``); None for a guardrail's."""
    empty: str = ""
    """What the chart says without a point; empty: the chart's own words."""
    axis: TimeAxis | None = None
    """The time span every chart of the rollout shares; None: this chart's own."""
    collecting: tuple[Collecting, ...] = ()
    """Each stage's start before the guardrail had data, to be labelled as waiting."""

    def svg(self, *, width: int = WIDTH, height: int = HEIGHT) -> str:
        """The chart as inline SVG (its text equivalent inside)."""
        if self.limit is not None:
            return limit_chart(
                self.points,
                self.tolerance,
                name=self.metric,
                declared=self.limit,
                stages=self.stages,
                decisions=self.decisions,
                width=width,
                height=height,
                axis=self.axis,
            )
        return guardrail_chart(
            self.points,
            self.tolerance,
            metric=self.metric,
            lower_is_better=self.lower_is_better,
            stages=self.stages,
            decisions=self.decisions,
            width=width,
            height=height,
            empty=self.empty or "no data yet",
            axis=self.axis,
            collecting=self.collecting,
        )

    def arms_svg(self, *, width: int = WIDTH, height: int = HEIGHT) -> str:
        """Each arm's own value over time, as inline SVG: the chart beside Δ's."""
        return arm_chart(
            self.arms,
            metric=self.metric,
            stages=self.stages,
            width=width,
            height=height,
            empty=self.empty or "no per-arm data",
            axis=self.axis,
        )

    @property
    def per_arm(self) -> bool:
        """Whether to chart this metric per arm: always a rate (from the counts); a latency
        quantile where the history kept the arms' quantiles (older points did not)."""
        return self.limit is None and (self.metric in RATES or bool(self.arms))

    def arms_text(self) -> str:
        """The per-arm chart in one sentence."""
        return arm_text(self.arms, self.metric)

    def text(self) -> str:
        """The chart in one sentence: latest Δ and bound, and when it crossed, if it did."""
        if self.limit is not None:
            return describe_limit(
                self.points, self.tolerance, name=self.metric, declared=self.limit
            )
        return describe(
            self.points,
            self.tolerance,
            metric=self.metric,
            lower_is_better=self.lower_is_better,
            empty=self.empty or "no data yet",
        )

    def table(self, *, limit: int = 60) -> str:
        """The chart's numbers, newest first, as an HTML table."""
        if self.limit is not None:
            return limit_table(self.points, self.tolerance, limit=limit)
        edge = self.tolerance if self.lower_is_better else -self.tolerance
        return chart_table(self.points, metric=self.metric, limit=limit, edge=edge)

    @property
    def crossed(self) -> ChartPoint | None:
        """The first point whose bound lay wholly beyond the tolerance (a limit's: above the
        rate it allows), if one did."""
        index = crossing(self.points, self.tolerance, lower_is_better=self.lower_is_better)
        return self.points[index] if index >= 0 else None


@dataclass(frozen=True, slots=True)
class GuardrailSpec:
    """A guardrail as the plan sets it: the figure's tolerance before any test of it."""

    metric: str
    tolerance: float = 0.0
    lower_is_better: bool = True
    dry_run: bool = False


def figures(
    history: RolloutHistory,
    decisions: Iterable[Decision] = (),
    guardrails: Sequence[GuardrailSpec] | None = None,
) -> list[Figure]:
    """One figure per guardrail of the plan (``guardrails``), else per metric the history names.

    A report has no plan, so its figures follow the history, whose points name
    every guardrail of the plan (those without data as ``null``).
    """
    specs = guardrails if guardrails is not None else [GuardrailSpec(m) for m in metrics(history)]
    starts = tuple(stage_marks(history))
    times = [p.ts_ms for p in history.points() if 0 <= p.ts_ms < 2**53]
    decided = tuple(m for m in decision_marks(decisions) if _within(m, times))
    # One time axis for every chart of the rollout: a stage's line falls at one x on each.
    axis = TimeAxis.over([*times, *(m.ts_ms for m in (*starts, *decided))])
    out = []
    for spec in specs[:MAX_FIGURES]:
        metric = spec.metric[:MAX_KEY_CHARS]
        points = tuple(chart_points(history, metric))
        tolerance, lower_is_better = tolerance_of(history, metric, spec)
        arms = tuple(arm_points(history, metric))
        waits = tuple(collecting(history, metric))
        figure = Figure(
            metric,
            points,
            tolerance,
            lower_is_better,
            starts,
            decided,
            spec.dry_run,
            arms,
            axis=axis,
            collecting=waits,
        )
        out.append(figure)
    limited = limit_figures(history, starts, decided, axis)
    if limited:  # a stage without control compared nothing: say so, not "no data yet"
        out = [f if f.points else dataclasses.replace(f, empty=NOT_COMPARED) for f in out]
    return out + limited


def limit_figures(
    history: RolloutHistory,
    starts: Sequence[Mark],
    decided: Sequence[Mark],
    axis: TimeAxis | None = None,
) -> list[Figure]:
    """One figure per absolute limit the history tests: the treated units' rate against it."""
    out = []
    for name in limit_names(history):
        points = tuple(limit_points(history, name))
        ceiling, declared = limit_of(history, name)
        out.append(
            Figure(
                name,
                points,
                ceiling,
                True,
                tuple(starts),
                tuple(decided),
                limit=declared,
                axis=axis,
            )
        )
    return out


def metrics(history: RolloutHistory) -> list[str]:
    """The guardrails a history's points name, in the order they first appear."""
    seen: dict[str, None] = {}
    for point in history.points():
        for metric in point.guardrails:
            if len(seen) < MAX_FIGURES:
                seen.setdefault(metric[:MAX_KEY_CHARS])
    return list(seen)


def stage_marks(history: RolloutHistory) -> list[Mark]:
    """Where each stage after the first began (its first recorded gate), named in words."""
    names = history.names()
    marks = []
    for entry in history.stages:
        first = min((p.ts_ms for p in entry.points if p.ts_ms >= 0), default=None)
        if first is not None and entry.stage > 0 and entry.stage in names:
            marks.append(Mark(first, names[entry.stage]))
    return marks


def decision_marks(decisions: Iterable[Decision]) -> list[Mark]:
    """The decisions that acted (or were the gate's), as marks named by their action."""
    marks = []
    for d in decisions:
        if d.kind == "gate" or d.outcome == "applied":
            marks.append(Mark(ts_ms(d.ts), d.action[:32]))
    return marks


def tolerance_of(
    history: RolloutHistory, metric: str, guardrail: GuardrailSpec
) -> tuple[float, bool]:
    """The absolute tolerance and direction the latest test of ``metric`` used.

    Without any test in the history, the plan's (``guardrail``).
    """
    for point in reversed(history.points()):
        test = point.guardrails.get(metric)
        if test is not None and math.isfinite(test.tolerance):
            return abs(test.tolerance), test.direction != "higher_is_better"
    planned = guardrail.tolerance
    return (abs(planned) if math.isfinite(planned) else 0.0), guardrail.lower_is_better


def _within(mark: Mark, times: Sequence[int]) -> bool:
    """Only decisions of this rollout's recorded span (give or take a minute) are marked."""
    if not times:
        return False
    return min(times) - MARK_SLACK_MS <= mark.ts_ms <= max(times) + MARK_SLACK_MS


def ts_ms(ts: float | datetime) -> int:
    """A message's time in ms since the epoch."""
    return int(as_datetime(ts).timestamp() * 1000)
