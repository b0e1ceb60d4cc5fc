"""Fold a batch of events into per-cell increments, in memory.

Folding is the whole of ingest's arithmetic: it is pure, so the property
tests can compare the store against :func:`fold` applied to the same events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.core.aggregates import CellDelta, CellKey
from controller.core.decoding import ConversionIn, InEvent, RequestIn
from controller.core.histogram import bucket_of


def fold(events: Iterable[InEvent], into: dict[CellKey, CellDelta]) -> None:
    """Add every event to its (flag, flag_version, arm) cell in ``into``."""
    # The hot loop of ingest: one tuple, one dict lookup and a few adds per event.
    for event in events:
        key = (event.flag, event.flag_version, event.arm)
        cell = into.get(key)
        if cell is None:
            cell = into[key] = CellDelta()
        cell.units.add(event.unit)
        if type(event) is RequestIn:
            cell.req += 1
            if event.error:
                cell.err += 1
            if event.latency_ms is not None:
                _add_latency(cell, event.latency_ms)
        elif type(event) is ConversionIn:
            _add_conversion(cell, event.value)
        else:
            cell.exp += 1


def _add_latency(cell: CellDelta, latency_ms: float) -> None:
    cell.lat_n += 1
    cell.lat_sum += latency_ms
    index = bucket_of(latency_ms)
    cell.hist[index] = cell.hist.get(index, 0) + 1


def _add_conversion(cell: CellDelta, value: float | None) -> None:
    cell.conv += 1
    if value is not None:
        cell.cv_n += 1
        cell.cv_sum += value
        cell.cv_sq += value * value


@dataclass(slots=True)
class PartitionDelta:
    """What one batch adds for one partition, and the offset it advances to."""

    partition: int
    next_offset: int
    cells: dict[CellKey, CellDelta] = field(default_factory=dict)
    rejects: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        """How many events (not rejections) the delta holds."""
        return sum(c.exp + c.req + c.conv for c in self.cells.values())
