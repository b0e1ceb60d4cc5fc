"""The owner's copies of its cells: each cell's strings of lanes and its hash's counts.

An events partition's keys are written by its fenced owner alone, so the owner can hold
each cell as Redis holds it and add a batch to its copy: the flush then writes the
strings of lanes whole (``SETRANGE``), where ``BITFIELD`` took one operation a lane, and
the hash's counts as their new values (``HSET``), where the script read each one, checked
it and added to it. The script's work for a cell no longer grows with the lanes and
fields a batch touched (docs/architecture.md, "The owner's copy of its cells").

A copy is a cache. A cell the owner holds no copy of is written as before, by increments,
and the script hands back its strings, its hash and its version. The script takes a
copy's write only where the cell's version (:data:`VERSION_FIELD` of its hash, one more
at every such write) and its strings' lengths are those the copy was made from, so a copy
of keys that expired, were deleted or were written by another owner is never written
back. A named conversion's fields (``conv:<name>``...) and the watched units' counts
are the script's to decide, and stay increments.
"""

from __future__ import annotations

import sys
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from controller.adapters.redis.cells.failure_counts import failure_argument
from controller.adapters.redis.cells.layout import SUM_FIELDS, lane_of_slots, lane_offsets
from controller.adapters.redis.cells.native import AddLanes, native_lanes, watched
from controller.adapters.redis.cells.unit_counts import unit_argument
from controller.core.stats import (
    BOTH_FIELD,
    FLOAT_FIELDS,
    WATCHED_FIELD,
    CellDelta,
)

__all__ = [
    "COPY_BUDGET",
    "RAW_FROM",
    "VERSION_FIELD",
    "CellCopy",
    "CellLanes",
    "CopyKey",
    "CopyWrite",
    "LaneCopies",
    "cell_argument",
    "cell_lanes",
    "written",
]

COPY_BUDGET = 64 * 2**20
"""Bytes of copies a store holds at most (``ingest.cell_copy_mb``). No cell is learned
while they are at it; a copy that grows past it lets the cells flushed least recently go,
and those are written by increments until there is room again."""
VERSION_FIELD = "lv"
"""The field of a cell's hash that counts the writes made from a copy."""
RAW_FROM = 17
"""The flush script's first argument that is a copy's bytes (``ARGV[17]``, flush.lua)."""
MAX_COUNT = 2**53 - 1
"""The most a counter holds (flush.lua's): beyond it a double loses counts."""
MAX_SUM = 1e300
"""A float sum stays below it (flush.lua's): far below the double limit."""
FIELD_BYTES = 100
"""About what one of a copy's hash fields takes in memory, for the budget."""

_BIG = sys.byteorder == "big"
_LANE_OF = lane_of_slots()
_HIGH_WORD = "I"
"""The array type of a high word: 4 bytes (``HIGH_WIDTH``) on every platform Python runs on."""
_FLOATS = frozenset((*FLOAT_FIELDS, *SUM_FIELDS))
_NOT_OWN = frozenset((WATCHED_FIELD, BOTH_FIELD, VERSION_FIELD))

CopyKey = tuple[int, str, int, str]
"""A cell of a partition: (partition, flag, version, arm)."""


class CellCopy:
    """One cell as Redis holds it: its strings of lanes (words in this machine's byte order),
    its hash's own counts and sums, and the version they are of.

    A flush adds to it in place (:func:`written`): a flush Redis did not apply lets the
    partition's copies go, so none is left that Redis does not hold."""

    __slots__ = ("fields", "high", "low", "version")

    def __init__(
        self,
        version: int,
        low: array[int],
        high: array[int],
        fields: dict[str, float] | None = None,
    ) -> None:
        self.version, self.low, self.high = version, low, high
        self.fields = {} if fields is None else fields

    @property
    def size(self) -> int:
        return len(self.low) * 2 + len(self.high) * 4 + len(self.fields) * FIELD_BYTES

    @classmethod
    def stored(
        cls, version: int, low: bytes, high: bytes, row: Sequence[bytes] = ()
    ) -> CellCopy | None:
        """A copy of the strings and the hash (``row``, flat, as ``HGETALL`` answers) as
        read, or None for strings that are not whole words or counts that are no numbers."""
        if len(low) % 2 or len(high) % 4:
            return None
        words, highs = array("H", low), array(_HIGH_WORD, high)
        if not _BIG:
            words.byteswap()
            highs.byteswap()
        fields: dict[str, float] = {}
        for i in range(0, len(row) - 1, 2):
            name = bytes(row[i]).decode("utf-8", "replace")
            if ":" in name or name in _NOT_OWN:
                continue
            try:
                value = float(row[i + 1]) if name in _FLOATS else int(row[i + 1])
            except ValueError:
                return None
            fields[name] = value
        return cls(version, words, highs, fields)


class CopyWrite:
    """A cell's write from its copy: what the script takes (``form``: the version and the
    strings' lengths it is of, then each string whole, ``b""`` where unchanged; and
    ``values``, the hash's new values, flat), and the copy it was added to. A plain class:
    one is made per cell of every flush."""

    __slots__ = ("copy", "form", "key", "values")

    def __init__(
        self,
        key: CopyKey,
        form: tuple[int, int, int, bytes, bytes],
        values: list[str],
        copy: CellCopy,
    ) -> None:
        self.key, self.form, self.values, self.copy = key, form, values, copy


def _big_endian(words: array[int]) -> bytes:
    if _BIG:
        return words.tobytes()
    swapped = array(words.typecode, words)
    swapped.byteswap()
    return swapped.tobytes()


def _grown(words: array[int], size: int) -> None:
    if size > len(words):
        words.frombytes(bytes(words.itemsize * (size - len(words))))


def _finite(x: float) -> bool:
    return -MAX_SUM < x < MAX_SUM


def _added_fields(
    fields: dict[str, float], counters: Mapping[str, int], sums: Mapping[str, float]
) -> list[str] | None:
    """The hash's new values (flat, as the script wrote them: counters whole, sums with 17
    digits), ``fields`` updated; None where a count would not stay exact or a sum finite
    (the script refuses those, and says so)."""
    values: list[str] = []
    for name, add in counters.items():
        count = fields.get(name, 0) + add
        if count > MAX_COUNT:
            return None
        fields[name] = count
        values += (name, str(count))
    for name, plus in sums.items():
        total = fields.get(name, 0.0) + plus
        if not (_finite(plus) and _finite(total)):
            return None
        fields[name] = total
        values += (name, format(total, ".17g"))
    return values


def added_lanes(low: array[int], high: array[int], counts: Mapping[int, int]) -> bool | None:
    """``counts`` (by slot) added to the low words ``low`` and high words ``high`` in place:
    whether a low word wrapped into its high word, or None where a high word would pass
    its 32 bits (the words then half added to). A string grows, as ``BITFIELD`` grows it,
    to the highest lane added to. The reference for the extension's adding (.native)."""
    lane_of, carried = _LANE_OF, False
    try:
        for slot, add in counts.items():
            lane = lane_of[slot]
            try:
                word = low[lane] + add
            except IndexError:
                _grown(low, lane + 1)
                word = add
            if word > 0xFFFF:
                _grown(high, lane + 1)
                high[lane] += word >> 16
                word &= 0xFFFF
                carried = True
            low[lane] = word
    except OverflowError:
        return None
    return carried


_add_lanes: Final[AddLanes] = native_lanes(_LANE_OF) or added_lanes


def written(
    copy: CellCopy,
    key: CopyKey,
    counts: Mapping[int, int],
    counters: Mapping[str, int] | None = None,
    sums: Mapping[str, float] | None = None,
) -> CopyWrite | None:
    """``counts`` (the unit buckets', by slot) and the hash's ``counters`` and ``sums``
    added to ``copy`` in place, with its strings to write (the low words whole, the high
    words whole where a low word wrapped) and the hash's new values; None where a high word
    would pass its 32 bits, a count 2^53 or a sum 1e300 (the script refuses those, and says
    so), the copy then half added to, to be let go. This runs for every cell of every
    flush: the lanes are added natively where the extension is installed."""
    low, high = copy.low, copy.high
    form = (copy.version, len(low) * 2, len(high) * 4)
    carried = _add_lanes(low, high, counts)
    if carried is None:
        return None
    values = _added_fields(copy.fields, counters or {}, sums or {})
    if values is None:
        return None
    lows = _big_endian(low) if counts else b""
    highs = _big_endian(high) if carried else b""
    return CopyWrite(key, (*form, lows, highs), values, copy)


@dataclass(frozen=True, slots=True)
class CellLanes:
    """How a flush writes a cell: by increments (``BITFIELD`` offsets and increments of its
    lanes, the hash's counters and sums added by the script), or from its copy
    (``write``); ``learn`` asks for the cell back."""

    offsets: list[int]
    adds: list[int]
    write: CopyWrite | None
    learn: bool


def cell_lanes(copies: LaneCopies | None, key: CopyKey, cell: CellDelta) -> CellLanes:
    """How a flush writes ``cell`` to ``key``: from the copy held of it, else by increments
    (learning the cell, where ``copies`` is kept at all)."""
    counts = cell.bucket_counts()
    copy = copies.get(key) if copies is not None else None
    if copies is not None and copy is not None:
        write = written(copy, key, counts, cell.base_counters(), cell.floats())
        if write is not None:
            return CellLanes([], [], write, learn=False)
        copies.drop(key)
    # A cell is learned only while the copies have room: past it, cells the copies let go
    # and learned again would each cost a reply of their strings and hash a flush
    learn = copies is not None and copies.has_room()
    return CellLanes(lane_offsets(counts), list(counts.values()), None, learn)


def cell_argument(
    flag: str, cell: CellDelta, lanes: CellLanes, raw: list[bytes]
) -> tuple[Any, ...]:
    """One cell of the flush script's batch (flush.lua, ARGV[5]), written as ``lanes`` says;
    a copy's bytes are arguments of their own, after those of ``raw``, as Lua's msgpack
    reads no binary."""
    named = [(k, n.conv, n.cv_n, repr(n.cv_sum), repr(n.cv_sq)) for k, n in cell.named.items()]
    units, members = list(cell.units), watched(cell.units)
    write = lanes.write
    if write is None:
        # Floats travel as repr() text: Lua would print numbers with 14 digits only.
        floats = {k: repr(v) for k, v in cell.floats().items()}
        return (
            *(flag, cell.base_counters(), floats, units, named),
            *(lanes.offsets, lanes.adds, members, (), lanes.learn, ()),
            unit_argument(cell, units, raw, RAW_FROM),
            failure_argument(cell.failed, cell.failed_requests),
        )
    version, low_size, high_size, low, high = write.form
    at = []
    for data in (low, high):
        at.append(RAW_FROM + len(raw) if data else 0)
        if data:
            raw.append(data)
    form = (version, low_size, high_size, *at)
    return (
        *(flag, {}, {}, units, named),
        *([], [], members, form, False, write.values),
        unit_argument(cell, units, raw, RAW_FROM),
        failure_argument(cell.failed, cell.failed_requests),
    )


class LaneCopies:
    """The copies one store holds, least recently flushed first, up to ``budget`` bytes."""

    def __init__(self, budget: int = COPY_BUDGET) -> None:
        self._budget, self._size = budget, 0
        self._held: OrderedDict[CopyKey, CellCopy] = OrderedDict()
        self._sizes: dict[CopyKey, int] = {}
        """Each copy's size when last kept: a write adds to a copy in place."""

    def get(self, key: CopyKey) -> CellCopy | None:
        return self._held.get(key)

    def keep(self, key: CopyKey, copy: CellCopy) -> None:
        """Hold ``copy`` as the cell's newest, letting the oldest go past the budget."""
        self.drop(key)
        self._held[key], self._sizes[key] = copy, copy.size
        self._size += self._sizes[key]
        while self._size > self._budget and self._held:
            self.drop(next(iter(self._held)))

    def has_room(self) -> bool:
        """Whether one more copy is taken: the copies are below their budget."""
        return self._size < self._budget

    def drop(self, key: CopyKey) -> None:
        if self._held.pop(key, None) is not None:
            self._size -= self._sizes.pop(key)

    def applied(self, lanes: Mapping[CopyKey, CellLanes], learned: Sequence[Any]) -> None:
        """Hold what a flush Redis applied made: each copy written (``lanes``: the flush's
        cells in order), one version on, and the cells the script handed back (``learned``,
        flat: the cell's index from 1, its version, low string, high string and hash)."""
        for cell in lanes.values():
            if cell.write is not None:
                cell.write.copy.version += 1
                self.keep(cell.write.key, cell.write.copy)
        keys = list(lanes)
        for i in range(0, len(learned) - 4, 5):
            index, version, low, high, row = learned[i : i + 5]
            copy = CellCopy.stored(int(version), bytes(low), bytes(high), row)
            if copy is not None:
                self.keep(keys[int(index) - 1], copy)

    def forget(self, partition: int) -> None:
        """Let every copy of ``partition`` go: Redis may hold what they do not."""
        for key in [k for k in self._held if k[0] == partition]:
            self.drop(key)

    @property
    def size(self) -> int:
        return self._size
