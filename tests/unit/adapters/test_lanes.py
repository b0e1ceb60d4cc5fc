"""Adding a read's strings of unit bucket lanes: exact, aligned from the start, refusing
what no flush writes, and put in the core's slot order."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable

import msgspec
import pytest

from controller.adapters.redis.cells.lanes import LaneCell, added_lanes, in_slots
from controller.adapters.redis.cells.layout import LANE_BYTES, LANE_COUNT, LANE_KINDS, SUM_FIELDS
from controller.core.stats.units import KIND_COUNT, KINDS, UNIT_BUCKETS

TOP = 2**63 - 1
"""The largest count a lane holds."""


def packed(*lanes: int) -> bytes:
    """A string of lanes as ``BITFIELD`` writes them (signed 64-bit, big-endian)."""
    return struct.pack(f">{len(lanes)}q", *lanes)


def naive(cells: list[bytes]) -> list[int]:
    """Each lane added one at a time, as the read script did."""
    sums = [0] * LANE_COUNT
    for cell in cells:
        for i, (count,) in enumerate(struct.iter_unpack(">q", cell)):
            sums[i] += count
    return sums


def lanes_of(*cells: bytes) -> list[int]:
    return list(added_lanes((f"k{i}", cell) for i, cell in enumerate(cells)))


def head(*lanes: int) -> list[int]:
    """``lanes`` first, then none."""
    return [*lanes, *(0,) * (LANE_COUNT - len(lanes))]


@pytest.mark.parametrize(
    ("cells", "want"),
    [
        pytest.param((), head(), id="no-cell"),
        pytest.param((b"",), head(), id="an-empty-cell"),
        pytest.param((b"", packed(3, 4), b""), head(3, 4), id="empty-cells-beside-one"),
        pytest.param((packed(1, 2, 3),), head(1, 2, 3), id="one-cell"),
        pytest.param((packed(1, 2), packed(10, 20)), head(11, 22), id="same-length"),
        # A shorter string's lanes are its first: padded on the right, not the left
        pytest.param((packed(1), packed(10, 20, 30)), head(11, 20, 30), id="shorter-first"),
        pytest.param((packed(10, 20, 30), packed(1)), head(11, 20, 30), id="shorter-last"),
        pytest.param((packed(0, 0, 5), packed(7)), head(7, 0, 5), id="zero-lanes-kept"),
        pytest.param(
            (packed(*range(LANE_COUNT)), packed(1)),
            [1, *range(1, LANE_COUNT)],
            id="every-lane",
        ),
        pytest.param((packed(2**56, 1), packed(2**56)), head(2**57, 1), id="past-2^56"),
        pytest.param((packed(TOP), packed(TOP)), head(2 * TOP), id="two-at-the-top"),
        # Three at the top sum past 2^64: added two by two, still exact
        pytest.param((packed(TOP, 1),) * 3, head(3 * TOP, 3), id="three-at-the-top"),
        pytest.param((packed(2**55, 1),) * 300, head(300 * 2**55, 300), id="300-cells"),
        pytest.param(
            (packed(5), packed(TOP - 1, 0, 9), b"", packed(1, 2)),
            head(TOP + 5, 2, 9),
            id="mixed",
        ),
    ],
)
def test_lanes_add_up_exactly_each_in_its_place(cells: tuple[bytes, ...], want: list[int]) -> None:
    assert lanes_of(*cells) == want


LOW, HIGH = "{p:t:0}:n:f:1:treatment", "{p:t:0}:h:f:1:treatment"
"""A cell's keys of low and high words."""


def low(*words: int) -> tuple[str, bytes]:
    """A cell's string of low words, as the flush writes them (unsigned 16-bit)."""
    return LOW, struct.pack(f">{len(words)}H", *words)


def high(*words: int) -> tuple[str, bytes]:
    """A cell's string of high words (unsigned 32-bit, each 2^16 of its lane)."""
    return HIGH, struct.pack(f">{len(words)}I", *words)


def wide(*lanes: int) -> tuple[str, bytes]:
    """A cell's string of 64-bit lanes, the form before (``:b:``)."""
    return "{p:t:0}:b:f:1:treatment", packed(*lanes)


@pytest.mark.parametrize(
    ("cells", "want"),
    [
        pytest.param((low(1, 2, 3),), head(1, 2, 3), id="low-words"),
        pytest.param((low(65_535, 7), high(2)), head(3 * 2**16 - 1, 7), id="a-carry"),
        pytest.param((high(0, 1),), head(0, 2**16), id="high-words-alone"),
        pytest.param(
            (wide(10, 20), low(1, 2, 3), high(1)), head(10 + 1 + 2**16, 22, 3), id="all-forms"
        ),
        pytest.param(
            (low(*(65_535,) * LANE_COUNT), high(*(2**32 - 1,) * LANE_COUNT)),
            [2**48 - 1] * LANE_COUNT,
            id="every-lane-at-its-bound",
        ),
        pytest.param(
            (*(low(65_535, 1) for _ in range(300)), *(high(2**31, 0) for _ in range(300))),
            head(300 * (65_535 + 2**47), 300),
            id="300-cells",
        ),
        # A flag named like a form: the form is the letter after the hash tag
        pytest.param((("{p:t:0}:n:b:1:treatment", struct.pack(">H", 9)),), head(9), id="flag-b"),
        # No hash tag names no form: 64-bit lanes, whatever the key's letters
        pytest.param((("kn", packed(5)),), head(5), id="no-tag"),
    ],
)
def test_low_and_high_words_add_up_as_their_lanes(
    cells: tuple[tuple[str, bytes], ...], want: list[int]
) -> None:
    assert list(added_lanes(cells)) == want


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        pytest.param((LOW, b"\x00" * 3), "3 bytes", id="not-whole-low-words"),
        pytest.param((HIGH, b"\x00" * 6), "6 bytes", id="not-whole-high-words"),
        pytest.param((LOW, b"\x00" * (LANE_BYTES // 4 + 2)), "bytes", id="a-word-too-many"),
    ],
)
def test_a_string_of_words_no_flush_writes_is_refused(cell: tuple[str, bytes], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        added_lanes([cell])


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        pytest.param(packed(-1), r"^k1: a unit bucket lane holds a negative count$", id="neg"),
        pytest.param(packed(0, 0, -(2**63)), r"^k1: .* negative count$", id="neg-later"),
        pytest.param(packed(5, -5), r"^k1: .* negative count$", id="neg-beside-one"),
        pytest.param(b"\x00" * 12, r"^k1 holds 12 bytes, not unit bucket lanes$", id="12-bytes"),
        pytest.param(b"\x00", r"^k1 holds 1 bytes, not unit bucket lanes$", id="1-byte"),
        pytest.param(
            b"\x00" * (LANE_BYTES + 8),
            rf"^k1 holds {LANE_BYTES + 8} bytes, not unit bucket lanes$",
            id="a-lane-too-many",
        ),
    ],
)
def test_what_no_flush_writes_is_refused_with_its_key(cell: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        lanes_of(packed(1, 2), cell, packed(3))


def test_all_lanes_are_accepted() -> None:
    assert lanes_of(b"\x00" * LANE_BYTES) == head()


@pytest.mark.parametrize("seed", range(6))
def test_random_cells_add_up_as_lane_by_lane(seed: int) -> None:
    rng = random.Random(seed)
    # Mostly counts, some near the top (added two by two), some of them short or empty
    top = rng.choice((2**20, 2**53, 2**56, TOP))
    cells = [
        packed(*(rng.randrange(top + 1) for _ in range(rng.randrange(LANE_COUNT + 1))))
        for _ in range(rng.choice((1, 2, 4, 16, 40)))
    ]
    assert lanes_of(*cells) == naive(cells)


def slot(bucket: int, kind: str) -> int:
    return bucket * KIND_COUNT + KINDS.index(kind)


def lane(bucket: int, kind: str) -> int:
    return LANE_KINDS.index(kind) * UNIT_BUCKETS + bucket


def test_lanes_and_float_sums_go_to_their_slots_as_floats() -> None:
    lanes = [0] * LANE_COUNT
    lanes[lane(5, "e")], lanes[lane(63, LANE_KINDS[-1])] = 7, 2**53
    sums = [0.0] * len(SUM_FIELDS)
    sums[SUM_FIELDS.index("u3.s")] = 0.1
    slots = in_slots(tuple(lanes), [tuple(sums)])
    assert len(slots) == UNIT_BUCKETS * KIND_COUNT
    assert slots[slot(5, "e")] == 7.0
    assert slots[slot(63, LANE_KINDS[-1])] == 2.0**53
    assert slots[slot(3, "s")] == 0.1
    assert sum(slots) == 7 + 2**53 + 0.1
    assert {type(x) for x in slots} == {float}


def test_float_sums_of_several_replies_add_with_fsum_and_none_are_zeros() -> None:
    lanes = (0,) * LANE_COUNT
    parts = [tuple([0.1] * len(SUM_FIELDS)), tuple([0.2] * len(SUM_FIELDS))]
    assert in_slots(lanes, parts)[slot(0, "s")] == math.fsum((0.1, 0.2))
    assert in_slots(lanes, []) == (0.0,) * (UNIT_BUCKETS * KIND_COUNT)
    with pytest.raises(ValueError, match="need"):
        in_slots(lanes, [(0.0,)])
    with pytest.raises(ValueError, match="need"):
        in_slots(lanes[1:], [])


@pytest.mark.parametrize(
    ("header", "size"),
    [
        pytest.param(lambda n: bytes([0xA0 | n]), 8, id="fixstr"),
        pytest.param(lambda n: b"\xd9" + n.to_bytes(1, "big"), 200, id="str8"),
        pytest.param(lambda n: b"\xda" + n.to_bytes(2, "big"), LANE_BYTES, id="str16"),
        pytest.param(lambda n: b"\xdb" + n.to_bytes(4, "big"), 70_000, id="str32"),
        pytest.param(lambda n: b"\xc5" + n.to_bytes(2, "big"), 800, id="bin16"),
    ],
)
def test_a_cell_is_read_past_its_msgpack_header(header: Callable[[int], bytes], size: int) -> None:
    body = bytes(random.Random(size).randrange(256) for _ in range(size))
    doc = b"\x92\xa3key" + header(size) + body
    cell = msgspec.msgpack.decode(doc, type=LaneCell)
    assert (cell.key, cell.lanes) == ("key", body)
