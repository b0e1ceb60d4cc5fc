"""The draw of a flushed cell's units into the watched sample, natively where it can be.

Every flush draws each unit of each cell it writes
(:func:`~controller.core.stats.watched_members`: one MurmurHash3 of the unit's id), so
the draw costs the daemon about as much per event as all the rest of writing a cell from
its copy. The events fold's native extension (``rollout_fold_native``, built by ``make
native``) makes the same draw in Rust, at about a seventh of the cost per unit; where
it is installed the flush draws with it. ``tests/unit/adapters/test_watched_draw.py``
compares both, member for member, on generated and hostile units.
``ROLLOUT_NATIVE_FOLD=0`` turns it off with the fold, for benchmarks that compare the two
paths in one sitting.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from functools import partial
from typing import Final

from controller.core.stats import WATCH_DRAW, WATCH_SEED, watched_members

SWITCH = "ROLLOUT_NATIVE_FOLD"
"""The native fold's switch (:mod:`controller.daemon.ingest.native_fold`): ``0`` turns this
off too."""

Draw = Callable[[Iterable[str]], list[str]]


def _native() -> Draw | None:
    if os.environ.get(SWITCH, "1") == "0":
        return None
    try:
        module = importlib.import_module("rollout_fold_native")
    except ImportError:
        return None
    draw = getattr(module, "watched_members", None)  # absent from an older build
    return None if draw is None else partial(draw, seed=WATCH_SEED, draw=WATCH_DRAW)


NATIVE_DRAW: Final = _native()

watched: Final[Draw] = NATIVE_DRAW or watched_members
"""The units of a cell drawn into the watched sample, as their members."""
