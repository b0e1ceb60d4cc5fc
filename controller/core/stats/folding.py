"""Fold a batch of events into per-cell increments, in memory.

Folding is the whole of ingest's arithmetic: it is pure, so the property
tests can compare the store against :func:`fold` applied to the same events.

An event is folded once per id: a delta remembers the ids it folded
(:class:`Seen`), so a copy of an event in the same batch is skipped here,
and the flush checks those ids against the ones the partition recorded
recently (docs/architecture.md, "Exactly once": "Event ids").
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.core.common import EDGES_MS
from controller.core.stats.aggregates import CellDelta, CellKey, NamedDelta
from controller.core.stats.units import (
    CONVERSIONS,
    CRASHES,
    ERRORS,
    EXCEPTIONS,
    EXPOSURES,
    FINE_PER_BIN,
    KIND_COUNT,
    LATENCY,
    REQUESTS,
    UNIT_BUCKETS,
    VALUE_SUM,
    VALUES,
)
from controller.core.wire import (
    ConversionIn,
    CrashIn,
    ExceptionIn,
    ExposureIn,
    InEvent,
    RequestIn,
)

FOLD_LAYOUT = (
    *(UNIT_BUCKETS, KIND_COUNT, EXPOSURES, REQUESTS, ERRORS, CONVERSIONS, VALUES, CRASHES),
    *(EXCEPTIONS, VALUE_SUM, LATENCY, FINE_PER_BIN),
)
"""The unit buckets' layout as :func:`fold` counts in them, in this order, for a fold that
is not written in Python (the native one: docs/architecture.md, "Decoding and folding
natively")."""


@dataclass(slots=True)
class Seen:
    """The event ids a delta folded, the ids it must skip, and how many copies it skipped.

    ``known`` are ids the store already counted (a flush said so): skipped
    like a repeat, and not recorded again.
    """

    ids: set[str] = field(default_factory=set)
    known: frozenset[str] = frozenset()
    repeats: int = 0

    @classmethod
    def skipping(cls, known: frozenset[str]) -> Seen:
        return cls(ids=set(known), known=known)

    def recorded(self) -> list[str]:
        """The ids this delta counted: the ones the flush records."""
        return list(self.ids - self.known if self.known else self.ids)


def fold(
    events: Iterable[InEvent],
    into: dict[CellKey, CellDelta],
    *,
    flag_ok: Callable[[str], bool] | None = None,
    seen: Seen | None = None,
) -> InEvent | None:
    """Add every event to its (flag, flag_version, arm) cell in ``into``, in order.

    An event of a targeted rollout's ``carried`` or ``outside`` cohort is
    counted in the cell named by its cohort instead of its arm (both arms
    together): such units are in neither arm of the stage's comparison, and
    no gate reads those cells (:mod:`controller.core.rules.targeting`).

    With ``flag_ok``, a flag is checked when its first cell is made; folding
    stops at the first event whose flag it refuses, and that event is
    returned (the ones before it are folded). Returns None when all were.

    With ``seen`` (ingest's folds), an event is folded once per id: one
    whose id ``seen`` holds (folded before, in this call or an earlier one
    given the same ``seen``, or known to the store) is skipped and counted in
    its ``repeats``. A refused event is refused even when its id was seen,
    and its id is not kept, so it takes the per-record path as any refused
    event does. Without ``seen`` every event is folded.
    """
    tally = Seen() if seen is None else seen
    remember = _keep_none if seen is None else tally.ids.add
    return _fold_each(events, into, flag_ok, tally, remember)


_ARMED = (None, "compared")
"""The cohorts an event is counted in its arm for (the rest count in their own cell)."""


def _fold_each(
    events: Iterable[InEvent],
    into: dict[CellKey, CellDelta],
    flag_ok: Callable[[str], bool] | None,
    tally: Seen,
    remember: Callable[[str], None],
) -> InEvent | None:
    """:func:`fold`'s loop: each event added to its cell, its id to ``remember``."""
    # The hot loop of ingest: one tuple, one dict lookup and a few adds per event, everything
    # inline (a call per event costs as much as the adds). A unit bucket's count is a slot
    # appended to the cell's hits, counted up in C at the flush (CellDelta.bucket_counts).
    # The unit's first slot is units.unit_bucket inline, hashed per event: a cache of units
    # costs more when most units of a batch are new.
    get, edges, ids, repeats = into.get, EDGES_MS, tally.ids, 0
    crc, buckets, width = zlib.crc32, UNIT_BUCKETS, KIND_COUNT
    latency_at = LATENCY * FINE_PER_BIN  # a fine index i counts in slot base + (i + this) // 5
    for event in events:
        cohort = event.cohort
        key: CellKey = (event.flag, event.flag_version, event.arm if cohort in _ARMED else cohort)
        cell = get(key)
        if cell is None:
            if flag_ok is not None and not flag_ok(event.flag):
                tally.repeats += repeats
                return event
            cell = into[key] = CellDelta()
        # After the flag check: a copy that breaks the contract is refused as such.
        if event.id in ids:
            repeats += 1
            continue
        remember(event.id)
        unit = event.unit
        cell.units.add(unit)
        base = crc(unit.encode("utf-8", "surrogatepass")) % buckets * width
        hit = cell.hits.append
        if type(event) is RequestIn:
            cell.req += 1
            hit(base + REQUESTS)
            own = cell.unit_requests
            own[unit] = own.get(unit, 0) + 1
            if event.error:  # a few requests in a hundred: a call is affordable
                _add_error(cell, event, unit, base)
            latency = event.latency_ms
            if latency is not None:
                cell.lat_n += 1
                cell.lat_sum += latency
                hist = cell.hist
                index = bisect_right(edges, latency)  # histogram.bucket_of, inline
                hist[index] = hist.get(index, 0) + 1
                hit(base + (index + latency_at) // FINE_PER_BIN)
        elif type(event) is ExposureIn:
            cell.exp += 1
            hit(base + EXPOSURES)
        else:
            _add_rarer(cell, event, base)  # rarer than requests: a call is affordable
    tally.repeats += repeats
    return None


def _add_error(cell: CellDelta, event: RequestIn, unit: str, base: int) -> None:
    """Count a failed request in ``cell``, its unit's bucket (from slot ``base``) and its
    unit's errors, and keep its name where it gave one."""
    cell.err += 1
    cell.hits.append(base + ERRORS)
    own = cell.unit_errors
    own[unit] = own.get(unit, 0) + 1
    if event.failure is not None:
        cell.failed_requests.append((event.failure, base // KIND_COUNT))


def _add_rarer(cell: CellDelta, event: InEvent, base: int) -> None:
    """Count a conversion, a crash or an exception in ``cell`` and its unit's bucket. A crash
    is also an exception (the one nobody caught); both are kept in the unit buckets alone."""
    if type(event) is ConversionIn:
        _add_conversion(cell, event, base)
        return
    cell.failures += 1
    cell.hits.append(base + EXCEPTIONS)
    if type(event) is CrashIn:
        cell.hits.append(base + CRASHES)
    if isinstance(event, (CrashIn, ExceptionIn)) and event.failure is not None:
        cell.failed.append((event.failure, event.example, base // KIND_COUNT))


def _add_conversion(cell: CellDelta, event: ConversionIn, base: int) -> None:
    """Count a conversion in ``cell`` and its unit's bucket (from slot ``base``): every
    conversion in the total, a named one under its name too."""
    cell.conv += 1
    cell.hits.append(base + CONVERSIONS)
    value = event.value
    if value is not None:
        cell.cv_n += 1
        cell.cv_sum += value
        cell.cv_sq += value * value
        cell.hits.append(base + VALUES)
        sums = cell.sums
        sums[base + VALUE_SUM] = sums.get(base + VALUE_SUM, 0.0) + value
    if event.name is not None:
        _add_named(cell, event.name, value)


def _add_named(cell: CellDelta, name: str, value: float | None) -> None:
    """Count a conversion of ``name`` under its name in ``cell``."""
    named = cell.named.get(name)
    if named is None:
        named = cell.named[name] = NamedDelta()
    named.conv += 1
    if value is not None:
        named.cv_n += 1
        named.cv_sum += value
        named.cv_sq += value * value


def _keep_none(_event_id: str) -> None:
    """Remembers nothing: a fold without ``seen`` folds every event."""


@dataclass(slots=True)
class PartitionDelta:
    """What one batch adds for one partition, and the offset it advances to."""

    partition: int
    next_offset: int
    cells: dict[CellKey, CellDelta] = field(default_factory=dict)
    rejects: Counter[str] = field(default_factory=Counter)
    seen: Seen = field(default_factory=Seen)
    rejoin: int | None = None
    """Where a restart reads the partition again for the joins its records left waiting
    (an OTLP topic's: ``controller.core.telemetry.rejoining``); None for the events topic."""

    @property
    def events(self) -> int:
        """How many events (not rejections) the delta holds."""
        return sum(c.exp + c.req + c.conv + c.failures for c in self.cells.values())
