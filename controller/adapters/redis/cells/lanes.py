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
from collections.abc import Iterable, Sequence
from functools import cache
from operator import itemgetter

import msgspec

from controller.adapters.redis.cells.layout import (
    HIGH_WIDTH,
    LANE_BYTES,
    LANE_COUNT,
    LANE_WIDTH,
    SLOT_SOURCES,
    SUM_FIELDS,
)

__all__ = ["LaneCell", "added_lanes", "in_slots"]

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
