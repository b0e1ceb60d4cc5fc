"""Where a chart's text goes: every label in a box of its own, none over another.

Pure. A chart collects its labels (ticks, the tolerance's, the stages', the decisions',
the arms' latest values) and :func:`layout` places them most important first: each at
its spot if it is free, else nudged by its text's height along the steps it allows (a
stage's label down a row, a decision's up one, an arm's value either way), and dropped
when no step is free. A dropped label loses nothing: each value is also in the chart's
table and its sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from controller.core.common import html_text

CHAR_PX = 7.0
"""About how wide a character of a 12 px label is."""
LINE_PX = 14.0
"""A label's height with the space between two rows."""
ASCENT_PX, DESCENT_PX = 10.0, 3.0
"""How far a 12 px label reaches above and below its baseline."""
ROWS = 3
"""How many rows a label may move before it is dropped."""


@dataclass(frozen=True, slots=True)
class Label:
    """A text at a baseline point, with how it may move if its spot is taken."""

    x: float
    y: float
    text: str
    cls: str
    anchor: str = "start"
    rank: int = 5
    """Lower is placed first, so kept where labels compete."""
    step: float = 0.0
    """Pixels per nudge: positive moves down; 0: it stays or is dropped."""
    both_ways: bool = False
    """Nudged alternately up and down (an arm's value), not only along ``step``."""
    attrs: str = ""
    """Further attributes, already escaped (``data-ts="…"``)."""

    def box(self) -> tuple[float, float, float, float]:
        """Left, top, right, bottom of the text as drawn."""
        width = CHAR_PX * len(self.text)
        left = {"start": self.x, "end": self.x - width}.get(self.anchor, self.x - width / 2)
        return left, self.y - ASCENT_PX, left + width, self.y + DESCENT_PX

    def svg(self) -> str:
        return (
            f'<text class="{self.cls}" x="{self.x}" y="{self.y}" text-anchor="{self.anchor}"'
            f"{self.attrs}>{html_text(self.text)}</text>"
        )


def overlap(a: Label, b: Label) -> bool:
    """Whether two labels' boxes share any area."""
    al, at, ar, ab = a.box()
    bl, bt, br, bb = b.box()
    return al < br and bl < ar and at < bb and bt < ab


def layout(labels: Iterable[Label], *, top: float, bottom: float) -> list[Label]:
    """The labels that fit between ``top`` and ``bottom``, each moved to a free spot."""
    placed: list[Label] = []
    for label in sorted(labels, key=lambda lb: lb.rank):  # stable: equal ranks keep order
        spot = next((c for c in _candidates(label) if _free(c, placed, top, bottom)), None)
        if spot is not None:
            placed.append(spot)
    return placed


def render(labels: Sequence[Label], *, top: float, bottom: float) -> str:
    """The labels laid out, as SVG text elements."""
    return "".join(label.svg() for label in layout(labels, top=top, bottom=bottom))


def _candidates(label: Label) -> list[Label]:
    if not label.step:
        return [label]
    offsets: list[float] = [0.0]
    for row in range(1, ROWS):
        offsets += [-row * label.step, row * label.step] if label.both_ways else [row * label.step]
    return [replace(label, y=round(label.y + offset, 1)) for offset in offsets]


def _free(label: Label, placed: Sequence[Label], top: float, bottom: float) -> bool:
    _, above, _, below = label.box()
    return top <= above and below <= bottom and not any(overlap(label, p) for p in placed)
