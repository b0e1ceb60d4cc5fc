"""The flush's per-unit and per-slot work, natively where the extension is installed.

Every flush draws each unit of each cell it writes into the watched sample
(:func:`~controller.core.stats.watched_members`: one MurmurHash3 of the unit's id), and
adds each unit bucket slot's count to the owner's copy of the cell's lanes
(:mod:`.copies`). Both grow with the events a flush holds, and in Python they cost
the daemon about a tenth of its CPU on the ingest bench. The events fold's native
extension (``rollout_fold_native``, built by ``make native``) does the same two in
Rust, to the same members and the same words; where it is installed the flush uses it.
The Python functions are the reference and the fallback:
``tests/unit/adapters/test_flush_native.py`` compares both on generated and hostile
input. ``ROLLOUT_NATIVE_FOLD=0`` turns it off with the fold, for benchmarks that compare
the two paths in one sitting.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Final

from controller.core.stats import WATCH_DRAW, WATCH_SEED, watched_members
from controller.kit.native import fold_extension

Draw = Callable[[Iterable[str]], list[str]]
AddLanes = Callable[["array[int]", "array[int]", Mapping[int, int]], "bool | None"]
"""Counts by slot added to a copy's low and high words in place: whether a word carried
into the high words, or None where a high word would pass 32 bits."""


_NATIVE = fold_extension()


def native_draw() -> Draw | None:
    """The extension's draw (None without it, or from an older build without the draw)."""
    draw = getattr(_NATIVE, "watched_members", None)
    return None if draw is None else partial(draw, seed=WATCH_SEED, draw=WATCH_DRAW)


def native_lanes(lane_of: Sequence[int]) -> AddLanes | None:
    """The extension's adding of counts to lanes, for the layout's ``lane_of`` table."""
    adder = getattr(_NATIVE, "LaneAdder", None)
    return None if adder is None else adder(list(lane_of)).add


NATIVE_DRAW: Final = native_draw()

watched: Final[Draw] = NATIVE_DRAW or watched_members
"""The units of a cell drawn into the watched sample, as their members."""
