"""The time axis every chart of a rollout shares, and the plot's frame in pixels.

Pure. A rollout's charts (a guardrail's Δ, each arm's value, a limit's rate) are drawn one
under another: on one :class:`TimeAxis` an instant is one x on each, so a stage's line
falls at the same place on all of them, in the console and in a report alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from controller.console.labels import LINE_PX, Label

WIDTH, HEIGHT = 900, 300
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 72, 16, 20, 28


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """The time span every chart of one rollout shares: one instant is one x on each, so a
    stage's line falls at the same place on the Δ chart, the arms' and the limits'."""

    t0: int
    t1: int

    @classmethod
    def over(cls, instants: Iterable[int]) -> TimeAxis | None:
        """The span from the first instant to the last (at least a second); None without any."""
        times = list(instants)
        if not times:
            return None
        return cls(min(times), max(*times, min(times) + 1000))

    def x(self, ts_ms: int, width: int) -> float:
        """``ts_ms`` as x on a chart ``width`` wide."""
        share = (ts_ms - self.t0) / (self.t1 - self.t0)
        return round(PAD_LEFT + share * (width - PAD_LEFT - PAD_RIGHT), 1)


def time_ticks(x: Callable[[int], float], t0: int, t1: int, bottom: float) -> list[Label]:
    """The time axis's two ends, in UTC."""
    return [
        Label(x(ts), bottom + 18, f"{clock(ts)} UTC", "tick", anchor, rank=2)
        for ts, anchor in ((t0, "start"), (t1, "end"))
    ]


def mark_line(ts_ms: int, x: Callable[[int], float], height: int, cls: str) -> str:
    """A mark's vertical line across the plot, with its instant (``data-ts``)."""
    at = x(ts_ms)
    return (
        f'<line class="{cls}" x1="{at}" x2="{at}" y1="{PAD_TOP}" y2="{height - PAD_BOTTOM}"'
        f' data-ts="{ts_ms}" stroke="currentColor" stroke-opacity="0.5"'
        ' stroke-dasharray="2 3"/>'
    )


def clock(ts_ms: int) -> str:
    """An instant in ms since the epoch as ``HH:MM:SS`` (UTC)."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M:%S")


def ringed(x: float, y: float, ts_ms: int, value: float, said: str) -> tuple[str, list[Label]]:
    """The ring on the point where a band first crossed its line (a tolerance, a limit), and
    its label (``said``, e.g. "crossed 12:00:41")."""
    ring = (
        f'<circle class="crossing" cx="{x}" cy="{y}" r="5" fill="none" stroke="currentColor"'
        f' stroke-width="2" data-ts="{ts_ms}" data-value="{value!r}"/>'
    )
    at = max(y - 8, PAD_TOP + 10)
    return ring, [Label(x - 4, at, said, "crossing-label", "end", 1, LINE_PX, both_ways=True)]
