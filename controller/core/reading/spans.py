"""When things began and ended, from what a rollout's status and gate history say.

Pure. Three readings the console and reports draw on:

- :func:`collecting`: the stretch at each stage's start where a guardrail had too little
  data to be tested (its history points name it ``null``), with the units counted by its
  end, so a chart can say the gap is waiting, not missing data;
- :func:`stage_spans`: each stage's start, end and duration: a stage ends where the next
  began, the one a rollout ended in where it ended, and the running one has run its time
  in stage so far;
- :func:`rollout_span`: when a rollout ended and how long it ran in all (so far, while it
  runs).

Times come as the status serves them (ISO 8601) and the history records them (ms since
the epoch); one that does not parse is unknown, never guessed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.core.reading.served_history import HistoryPoint, RolloutHistory
from controller.core.reading.views import RolloutView

FINISHED = ("completed", "rolled_back", "killed", "aborted")
"""Phases a rollout does not leave: it ended when it came to one."""


@dataclass(frozen=True, slots=True)
class Collecting:
    """A stage's start before a guardrail had enough data to be tested."""

    start_ms: int
    end_ms: int
    """The first point that tested it, or the last that did not while none has yet."""
    units: int
    """Both arms' units at the last point that did not test it."""

    def text(self) -> str:
        return f"collecting: {self.units:,} units"


@dataclass(frozen=True, slots=True)
class Span:
    """A start, an end and the time between; None where unknown (the end: not yet)."""

    start: datetime | None
    end: datetime | None
    seconds: float | None


def collecting(history: RolloutHistory, metric: str) -> list[Collecting]:
    """Each stage's stretch before ``metric`` was first tested, oldest first."""
    out = []
    for entry in history.stages:
        points = sorted((p for p in entry.points if _ms(p.ts_ms)), key=lambda p: p.ts_ms)
        waiting = _untested_start(points, metric)
        if waiting:
            tested = points[len(waiting) :]
            end = tested[0].ts_ms if tested else waiting[-1].ts_ms
            units = sum(counts.units for counts in waiting[-1].arms.values())
            out.append(Collecting(waiting[0].ts_ms, end, units))
    return out


def _untested_start(points: Sequence[HistoryPoint], metric: str) -> list[HistoryPoint]:
    """The leading points that name ``metric`` without a test (a stage compared against
    limits names none: it waits for nothing)."""
    out = []
    for point in points:
        if metric not in point.guardrails or point.guardrails[metric] is not None:
            break
        out.append(point)
    return out


def stage_spans(status: RolloutView, history: RolloutHistory) -> dict[int, Span]:
    """Each stage the history or the status knows a start of, by index."""
    starts: dict[int, datetime | None] = {
        entry.stage: _from_ms(min((p.ts_ms for p in entry.points if _ms(p.ts_ms)), default=-1))
        for entry in history.stages
    }
    if status.stage_started_at:
        starts[status.stage] = _parse(status.stage_started_at) or starts.get(status.stage)
    if (began := _parse(status.started_at)) is not None:
        starts[0] = began  # the first stage began with the rollout, before its first gate
    spans = {}
    for index in sorted(starts):
        start = starts[index]
        later = [starts[i] for i in sorted(starts) if i > index and starts[i] is not None]
        end = later[0] if later else _parse(status.ended_at)
        seconds = _between(start, end)
        if end is None and index == status.stage and math.isfinite(status.time_in_stage_s):
            seconds = status.time_in_stage_s  # running: its time so far
        spans[index] = Span(start, end, seconds)
    return spans


def rollout_span(status: RolloutView) -> Span:
    """When the rollout started and ended, and how long it ran: to its end once ended, else
    so far (to its stage's start, then its time in stage)."""
    start, end = _parse(status.started_at), _parse(status.ended_at)
    if end is not None or status.phase in FINISHED:  # ended, maybe before its end was kept
        return Span(start, end, _between(start, end))
    stage_start = _parse(status.stage_started_at)
    before = _between(start, stage_start)
    so_far = status.time_in_stage_s
    if before is None or not math.isfinite(so_far):
        return Span(start, None, None)
    return Span(start, None, before + so_far)


def _between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return (end - start).total_seconds()


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _from_ms(ts_ms: int) -> datetime | None:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC) if _ms(ts_ms) else None


def _ms(value: int) -> bool:
    return 0 <= value < 2**53
