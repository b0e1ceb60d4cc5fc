"""A read's strings of unit bucket lanes added up in the daemon, every lane of a cell at once.

``read.lua`` hands each cell's string of lanes back as Redis holds it (:mod:`.layout`):
adding thousands of lanes one by one in Lua cost Redis more CPU per gate than the
whole gate cost the daemon. Here a string read as one big-endian integer holds lane
``i`` in its own 64-bit field, so adding the integers of several cells adds every
lane at once, in C, and no lane carries into the next as long as each lane's sum
stays below 2^64: the lanes are counts, never negative (a string whose lane is,
which no flush writes, is refused) and in practice below 2^56, so up to 256 cells
are added in one integer, and two when a lane is larger. The sums are read back as
unsigned lanes and put in the core's slot order (:data:`~.layout.SLOT_SOURCES`) with
the float sums the script added, as doubles: whole numbers, exact below 2^53.

A string shorter than another was written before its last lanes' kinds existed (or
never reached them): lane ``i`` is the ``i``-th from its start, so it is padded on
the right, which a shift of its integer does.

A cell's counts are kept as low and high words in two strings (:mod:`.layout`), and
before that as one string of 64-bit lanes; the key names the form (``:n:``, ``:h:``,
``:b:`` after its hash tag). A string of words is first spread into 64-bit lanes, its
words' bytes copied into place by extended slices (in C): a low word into a lane's
last two bytes, a high word into the four above them, so that the lane holds
``high * 2**16`` or ``low``. Added with every other string, a cell's lanes are then
its counts.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

import msgspec

from controller.adapters.redis.layout import (
    HIGH_WIDTH,
    LANE_BYTES,
    LANE_COUNT,
    LANE_WIDTH,
    SLOT_SOURCES,
    SUM_FIELDS,
    lane_of_slots,
    lane_offsets,
)
from controller.core.stats import CellDelta, watched_members

__all__ = [
    "COPY_BUDGET",
    "CellLanes",
    "CopyKey",
    "CopyWrite",
    "LaneCell",
    "LaneCopies",
    "added_lanes",
    "cell_argument",
    "cell_lanes",
    "in_slots",
]

LANE = 8
"""Bytes per lane."""
_WORDS = {"n": (LANE_WIDTH // 8, 0), "h": (HIGH_WIDTH // 8, LANE_WIDTH // 8), "b": (LANE, 0)}
"""Per form (the letter of the key after its hash tag): a word's bytes, and the bytes below
it in its lane (the low word's, under a high word)."""
_NO_LANES = (0,) * LANE_COUNT
_NO_SUMS = (0.0,) * len(SUM_FIELDS)
_in_slot_order = itemgetter(*SLOT_SOURCES)
_STR_HEADERS = {0xD9: 2, 0xDA: 3, 0xDB: 5, 0xC4: 2, 0xC5: 3, 0xC6: 5}
"""A msgpack string's (or binary's) header length by its first byte, past the fixed-length
form (``0xa0``-``0xbf``, one byte): Lua's msgpack writes every string as ``str``."""


class LaneCell(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One cell's string of lanes as ``read.lua`` answers it: its key and its bytes.

    Decoded raw: a string of lanes is no UTF-8, and Lua's msgpack has no binary type."""

    key: str
    packed: msgspec.Raw

    @property
    def lanes(self) -> bytes:
        """The string's bytes, past their msgpack header."""
        view = memoryview(self.packed)
        first = view[0]
        return bytes(view[1 if 0xA0 <= first <= 0xBF else _STR_HEADERS[first] :])


def added_lanes(cells: Iterable[tuple[str, bytes]]) -> tuple[int, ...]:
    """Each lane summed over the cells' strings (``(key, lanes)``; an empty string holds
    none), :data:`~.layout.LANE_COUNT` of them, exactly.

    Raises ValueError, naming the key, for a string that is not whole lanes or more of
    them than there are, and for one holding a negative lane."""
    held: list[bytes] = []
    small = True
    for key, stored in cells:
        if not stored:
            continue
        lanes = _spread(key, stored)
        size = len(lanes)
        if size % LANE or size > LANE_BYTES:
            raise ValueError(f"{key} holds {len(stored)} bytes, not unit bucket lanes")
        tops = lanes[0::LANE]  # each lane's first byte: its sign bit, and its 8 high bits
        if not tops.isascii():
            raise ValueError(f"{key}: a unit bucket lane holds a negative count")
        small = small and not tops.strip(b"\0")
        held.append(lanes)
    if not held:
        return _NO_LANES
    # 256 lanes below 2^56, or 2 below 2^63, add below 2^64: no carry into the next lane
    per = 256 if small else 2
    width = max(map(len, held))
    if len(held) == 1:  # nothing to add
        sums = _unsigned(width // LANE).unpack(held[0])
    else:
        parts = [_summed(held[i : i + per], width) for i in range(0, len(held), per)]
        sums = parts[0] if len(parts) == 1 else tuple(map(sum, zip(*parts, strict=True)))
    return sums + _NO_LANES[len(sums) :]


def _spread(key: str, stored: bytes) -> bytes:
    """A cell's string as 64-bit lanes: as stored for the form before, else each word put in
    its lane (a string that is not whole words is left as it is, to be refused)."""
    word, below = _WORDS.get(key.partition("}:")[2][:1], (LANE, 0))
    if word == LANE or len(stored) % word:
        return stored
    lanes = bytearray(len(stored) // word * LANE)
    at = LANE - below - word
    for byte in range(word):
        lanes[at + byte :: LANE] = stored[byte::word]
    return bytes(lanes)


def _summed(held: list[bytes], width: int) -> tuple[int, ...]:
    """The strings' lanes added as integers, each padded on the right to ``width`` bytes."""
    total = 0
    for lanes in held:
        total += int.from_bytes(lanes, "big") << (8 * (width - len(lanes)))
    return _unsigned(width // LANE).unpack(total.to_bytes(width, "big"))


@cache
def _unsigned(lanes: int) -> struct.Struct:
    return struct.Struct(f">{lanes}Q")


def in_slots(lanes: tuple[int, ...], sums: Sequence[tuple[float, ...]]) -> tuple[float, ...]:
    """An arm's unit buckets in the core's slot order: ``lanes`` (:func:`added_lanes`) and
    the float sums of each reply that holds any (:data:`~.layout.SUM_FIELDS`' order), those
    of several added with ``math.fsum`` as they always were."""
    if not sums:
        values = _NO_SUMS
    elif len(sums) == 1:
        values = sums[0]
    else:
        values = tuple(map(math.fsum, zip(*sums, strict=True)))
    if len(lanes) != LANE_COUNT or len(values) != len(SUM_FIELDS):
        raise ValueError(f"need {LANE_COUNT} lanes and {len(SUM_FIELDS)} float sums")
    # The lanes made floats in a list (a tuple from ``map`` grows as it goes), which the
    # slots are then picked from in one C call
    floats = list(map(float, lanes))
    floats += values
    slots: tuple[float, ...] = _in_slot_order(floats)
    return slots


# The owner's copies of its cells' strings of lanes.
#
# An events partition's keys are written by its fenced owner alone, so the owner can hold
# each cell's low and high words as Redis holds them and add a batch's counts to its copy:
# the flush then writes the bytes that changed (``SETRANGE``), one command a string,
# where ``BITFIELD`` took one operation a lane (docs/architecture.md, "The owner's copy of
# its lanes"). The copy is a cache: a cell the owner holds no copy of is written with
# ``BITFIELD`` as before, and the script hands its strings back. The script takes a
# copy's write only where the cell's version (field ``lv`` of its hash, one more at every
# such write) and its strings' lengths are those the copy was made from, so a copy of
# keys that expired, were deleted or were written by another owner is never written back.

COPY_BUDGET = 64 * 2**20
"""Bytes of copies a store holds at most; past it, the cells flushed least recently are let
go (their next flush goes by ``BITFIELD`` and brings their strings back)."""
_BIG = sys.byteorder == "big"
_LANE_OF = lane_of_slots()
_HIGH_WORD = "I"
"""The array type of a high word: 4 bytes (``HIGH_WIDTH``) on every platform Python runs on."""

RAW_FROM = 16
"""The flush script's first argument that is a copy's bytes (``ARGV[16]``, flush.lua)."""

CopyKey = tuple[int, str, int, str]
"""A cell of a partition: (partition, flag, version, arm)."""


@dataclass(frozen=True, slots=True)
class CellCopy:
    """One cell's strings of lanes as Redis holds them, words in this machine's byte order,
    and the cell's version they are of."""

    version: int
    low: array[int]
    high: array[int]

    @property
    def size(self) -> int:
        return len(self.low) * 2 + len(self.high) * 4

    @classmethod
    def stored(cls, version: int, low: bytes, high: bytes) -> CellCopy | None:
        """A copy of the strings as read, or None for strings that are not whole words."""
        if len(low) % 2 or len(high) % 4:
            return None
        words, highs = array("H", low), array(_HIGH_WORD, high)
        if not _BIG:
            words.byteswap()
            highs.byteswap()
        return cls(version, words, highs)


@dataclass(frozen=True, slots=True)
class CopyWrite:
    """A cell's write from its copy: what the script takes (``form``: the version and the
    strings' lengths it is of, then each string's byte offset and bytes from there), and
    the copy once Redis applied it."""

    key: CopyKey
    form: tuple[int, int, int, int, bytes, int, bytes]
    after: CellCopy


def _big_endian(words: array[int]) -> bytes:
    if _BIG:
        return words.tobytes()
    swapped = array(words.typecode, words)
    swapped.byteswap()
    return swapped.tobytes()


def _grown(words: array[int], size: int) -> None:
    if size > len(words):
        words.frombytes(bytes(words.itemsize * (size - len(words))))


def written(copy: CellCopy, key: CopyKey, counts: Mapping[int, int]) -> CopyWrite | None:
    """``copy`` with the unit buckets' ``counts`` (by slot) added, and its strings to write:
    the low words whole, and the high words whole where a low word wrapped; None where a
    high word would pass its 32 bits (``BITFIELD`` refuses that, and says so).

    A string grows, as ``BITFIELD`` grows it, to the highest lane added to. One loop does
    it all: this runs for every cell of every flush."""
    low, high = array("H", copy.low), array(_HIGH_WORD, copy.high)
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
    highs = _big_endian(high) if carried else b""
    sizes = (len(copy.low) * 2, len(copy.high) * 4)
    form = (copy.version, *sizes, 0, _big_endian(low), 0, highs)
    return CopyWrite(key, form, CellCopy(copy.version + 1, low, high))


class LaneCopies:
    """The copies one store holds, least recently flushed first, up to ``budget`` bytes."""

    def __init__(self, budget: int = COPY_BUDGET) -> None:
        self._budget, self._size = budget, 0
        self._held: OrderedDict[CopyKey, CellCopy] = OrderedDict()

    def get(self, key: CopyKey) -> CellCopy | None:
        return self._held.get(key)

    def keep(self, key: CopyKey, copy: CellCopy) -> None:
        """Hold ``copy`` as the cell's newest, letting the oldest go past the budget."""
        old = self._held.pop(key, None)
        self._size += copy.size - (old.size if old is not None else 0)
        self._held[key] = copy
        while self._size > self._budget and self._held:
            _, gone = self._held.popitem(last=False)
            self._size -= gone.size

    def applied(self, lanes: Mapping[CopyKey, CellLanes], learned: Sequence[Any]) -> None:
        """Hold what a flush Redis applied made: each copy's write of ``lanes`` (the flush's
        cells in order), and the strings the script handed back (``learned``, flat: the
        cell's index from 1, its version, low and high string)."""
        for cell in lanes.values():
            if cell.write is not None:
                self.keep(cell.write.key, cell.write.after)
        keys = list(lanes)
        for i in range(0, len(learned) - 3, 4):
            index, version, low, high = learned[i : i + 4]
            copy = CellCopy.stored(int(version), bytes(low), bytes(high))
            if copy is not None:
                self.keep(keys[int(index) - 1], copy)

    def forget(self, partition: int) -> None:
        """Let every copy of ``partition`` go: Redis may hold what they do not."""
        for key in [k for k in self._held if k[0] == partition]:
            self._size -= self._held.pop(key).size

    @property
    def size(self) -> int:
        return self._size


@dataclass(frozen=True, slots=True)
class CellLanes:
    """A cell's unit bucket counts as the flush script takes them: ``BITFIELD`` offsets and
    increments, or a copy's write (``write``); ``learn`` asks for the strings back."""

    offsets: list[int]
    adds: list[int]
    write: CopyWrite | None
    learn: bool

    def arguments(self, raw: list[bytes]) -> tuple[list[int], list[int], tuple[int, ...], bool]:
        """The cell's lanes, copy and learn, as the script reads them (its 6th, 7th, 9th and
        10th elements; the watched units are the 8th). A copy's bytes are arguments of
        their own, after those of ``raw``: Lua's msgpack reads no binary, and they are none
        of its text."""
        if self.write is None:
            return self.offsets, self.adds, (), self.learn
        version, low_size, high_size, low_at, low, high_at, high = self.write.form
        at = []
        for data in (low, high):
            at.append(RAW_FROM + len(raw) if data else 0)
            if data:
                raw.append(data)
        form = (version, low_size, high_size, low_at, at[0], high_at, at[1])
        return self.offsets, self.adds, form, self.learn


def cell_lanes(copies: LaneCopies | None, key: CopyKey, counts: Mapping[int, int]) -> CellLanes:
    """How a flush writes ``counts`` (by slot) to the cell ``key``: from the copy held of it,
    else by ``BITFIELD`` (learning the strings, where ``copies`` is kept at all)."""
    copy = copies.get(key) if copies is not None else None
    if copy is not None:
        if not counts:
            return CellLanes([], [], None, learn=False)
        write = written(copy, key, counts)
        if write is not None:
            return CellLanes([], [], write, learn=False)
    return CellLanes(lane_offsets(counts), list(counts.values()), None, copies is not None)


def cell_argument(
    flag: str, cell: CellDelta, lanes: CellLanes, raw: list[bytes]
) -> tuple[object, ...]:
    """One cell of the flush script's batch (flush.lua, ARGV[5]), its lanes as ``lanes``
    says, a copy's bytes added to ``raw``."""
    # Floats travel as repr() text: Lua would print numbers with 14 digits only.
    floats = {k: repr(v) for k, v in cell.floats().items()}
    named = [(k, n.conv, n.cv_n, repr(n.cv_sum), repr(n.cv_sq)) for k, n in cell.named.items()]
    offsets, adds, copy, learn = lanes.arguments(raw)
    return (
        *(flag, cell.base_counters(), floats, list(cell.units), named),
        *(offsets, adds, watched_members(cell.units), copy, learn),
    )
