"""The owner's copies of its cells: a copy's write holds what ``BITFIELD`` and the script's
sums would have made of the same counts, byte for byte, and the copies a store keeps stay
within their budget and go with their partition."""

from __future__ import annotations

import random
import struct
from array import array

import pytest

from controller.adapters.redis.cells.copies import (
    RAW_FROM,
    CellCopy,
    CellLanes,
    LaneCopies,
    cell_argument,
    cell_lanes,
    written,
)
from controller.adapters.redis.cells.layout import LANE_COUNT, SLOT_COUNT, lane_of_slots
from controller.adapters.redis.cells.unit_counts import unit_fields
from controller.core.stats import CellDelta
from controller.core.stats.units import FLOAT_SLOTS

KEY = (0, "f", 1, "treatment")
COUNT_SLOTS = [s for s in range(SLOT_COUNT) if s not in FLOAT_SLOTS]
LANE_OF = lane_of_slots()


def bitfield(counts: dict[int, int]) -> tuple[bytes, bytes]:
    """The low and high strings ``BITFIELD`` makes of ``counts`` (by lane) from nothing: each
    grown to the highest lane written, the high one only where a low word wrapped."""
    low_top = max(counts) + 1
    carried = [lane for lane, n in counts.items() if n > 0xFFFF]
    high_top = max(carried) + 1 if carried else 0
    low = struct.pack(f">{low_top}H", *(counts.get(i, 0) & 0xFFFF for i in range(low_top)))
    high = struct.pack(f">{high_top}I", *(counts.get(i, 0) >> 16 for i in range(high_top)))
    return low, high


def by_lane(counts: dict[int, int]) -> dict[int, int]:
    return {LANE_OF[slot]: n for slot, n in counts.items()}


def empty() -> CellCopy:
    return CellCopy(0, array("H"), array("I"))


def strings(copy: CellCopy) -> tuple[bytes, bytes]:
    low, high = array("H", copy.low), array("I", copy.high)
    if struct.pack("=H", 1) != struct.pack(">H", 1):
        low.byteswap()
        high.byteswap()
    return low.tobytes(), high.tobytes()


@pytest.mark.parametrize(
    ("counts", "wraps"),
    [
        pytest.param({COUNT_SLOTS[0]: 1}, False, id="one-count"),
        pytest.param({COUNT_SLOTS[5]: 3, COUNT_SLOTS[200]: 9}, False, id="grown-to-the-highest"),
        pytest.param({COUNT_SLOTS[7]: 0xFFFF}, False, id="the-top-of-a-low-word"),
        pytest.param({COUNT_SLOTS[7]: 0x10000}, True, id="one-wrap"),
        pytest.param({COUNT_SLOTS[9]: 5 * 0x10000 + 3, COUNT_SLOTS[2]: 1}, True, id="wraps"),
        pytest.param(dict.fromkeys(COUNT_SLOTS, 1), False, id="every-lane"),
    ],
)
def test_a_write_from_nothing_is_what_bitfield_makes(counts: dict[int, int], wraps: bool) -> None:
    write = written(empty(), KEY, counts)
    assert write is not None
    version, low_size, high_size, low, high = write.form
    assert (version, low_size, high_size) == (0, 0, 0)
    assert (low, high) == bitfield(by_lane(counts))
    assert bool(high) is wraps
    assert strings(write.copy) == (low, high)


def test_writes_one_after_another_add_up_as_one_write_of_their_sum() -> None:
    rng = random.Random(7)
    copies, copy, total = LaneCopies(), empty(), dict[int, int]()
    for _ in range(40):
        counts = {s: rng.choice((1, 2, 300, 40_000)) for s in rng.sample(COUNT_SLOTS, 30)}
        before = (copy.version, len(copy.low) * 2, len(copy.high) * 4)
        write = written(copy, KEY, counts)
        assert write is not None
        assert write.form[:3] == before
        copies.applied({KEY: CellLanes([], [], write, learn=False)}, [])
        for slot, n in counts.items():
            total[LANE_OF[slot]] = total.get(LANE_OF[slot], 0) + n
    low, high = bitfield(total)
    assert strings(copy) == (low, high)
    assert copy.version == 40


def test_a_high_word_past_32_bits_is_left_to_bitfield() -> None:
    slot = COUNT_SLOTS[3]
    assert written(empty(), KEY, {slot: 2**48}) is None
    assert written(empty(), KEY, {slot: 2**48 - 1}) is not None


def test_a_write_the_script_would_refuse_lets_the_copy_go() -> None:
    copies = LaneCopies()
    copies.keep(KEY, empty())
    lanes = cell_lanes(copies, KEY, made({COUNT_SLOTS[3]: 2**48}))
    # Half added to: by increments this time, and the script hands the cell back
    assert (lanes.write, lanes.learn) == (None, True)
    assert copies.get(KEY) is None
    assert copies.size == 0


def test_a_float_slot_names_a_lane_past_the_last() -> None:
    assert {LANE_OF[s] for s in FLOAT_SLOTS} == {LANE_COUNT}
    assert max(LANE_OF[s] for s in COUNT_SLOTS) == LANE_COUNT - 1


def made(counts: dict[int, int], **fields: int) -> CellDelta:
    """A cell whose unit buckets count ``counts`` (by slot) and whose hash adds ``fields``."""
    return CellDelta(counts=dict(counts), **fields)  # type: ignore[arg-type]


def test_a_cell_without_a_copy_goes_by_bitfield_and_learns() -> None:
    cell = made({COUNT_SLOTS[1]: 4}, req=4)
    lanes = cell_lanes(LaneCopies(), KEY, cell)
    offsets = [16 * LANE_OF[COUNT_SLOTS[1]]]
    assert (lanes.offsets, lanes.adds, lanes.write, lanes.learn) == (offsets, [4], None, True)
    argument = cell_argument("f", cell, lanes, [])
    assert argument[1] == {"req": 4}
    # No request of a unit: no per-unit counts; no named failure: none to count by name
    assert argument[8:] == ((), True, (), (), [])
    # A store that keeps no copies (a partition several owners write) never learns
    assert cell_lanes(None, KEY, cell).learn is False


def test_a_cell_with_a_copy_is_written_from_it_and_its_bytes_go_as_arguments() -> None:
    copies = LaneCopies()
    copies.keep(KEY, CellCopy(3, array("H"), array("I"), {"req": 10, "lat_sum": 0.5}))
    cell = made({COUNT_SLOTS[1]: 0x10001}, req=2, lat_n=1)
    cell.lat_sum = 0.25
    lanes = cell_lanes(copies, KEY, cell)
    assert lanes.write is not None
    assert (lanes.offsets, lanes.learn) == ([], False)
    raw = [b"x"]
    argument = cell_argument("f", cell, lanes, raw)
    # No increments: the hash's new values, the copy's bytes as arguments of their own
    assert argument[1:3] == ({}, {})
    form, learn, values, per_unit, failed = argument[8:]
    assert (per_unit, failed) == ((), [])
    assert form[:3] == (3, 0, 0)
    assert form[3:] == (RAW_FROM + 1, RAW_FROM + 2)
    assert raw[1:] == list(lanes.write.form[3:])
    assert learn is False
    assert dict(zip(values[::2], values[1::2], strict=True)) == {
        "req": "12",
        "lat_n": "1",
        "lat_sum": "0.75",
    }


def test_a_cells_unit_counts_go_in_its_units_order_their_fields_as_an_argument() -> None:
    cell = made({COUNT_SLOTS[1]: 3}, req=3, err=1)
    cell.units = {"a", "b", "c"}
    cell.unit_requests, cell.unit_errors = {"a": 2, "c": 1}, {"c": 1}
    raw = [b"x"]
    argument = cell_argument("f", cell, cell_lanes(None, KEY, cell), raw)
    units, (at, requests, errors) = argument[3], argument[11]
    assert at == RAW_FROM + 1
    assert raw[1] == unit_fields(units)
    assert len(raw[1]) == 8 * len(units)
    counts = dict(zip(units, zip(requests, errors, strict=True), strict=True))
    assert counts == {"a": (2, 0), "b": (0, 0), "c": (1, 1)}


@pytest.mark.parametrize(
    ("had", "add", "text"),
    [
        pytest.param(0.1, 0.2, "0.30000000000000004", id="seventeen-digits"),
        pytest.param(0.0, 1e-320, "9.9998886718268301e-321", id="subnormal"),
        pytest.param(-2.5, 1.0, "-1.5", id="negative"),
        pytest.param(1e16, 1.0, "10000000000000000", id="past-2^53"),
    ],
)
def test_a_sum_is_written_as_the_script_formats_it(had: float, add: float, text: str) -> None:
    write = written(
        CellCopy(0, array("H"), array("I"), {"cv_sum": had}), KEY, {}, {}, {"cv_sum": add}
    )
    assert write is not None
    assert write.values == ["cv_sum", text]
    assert text == "%.17g" % (had + add)  # the script's format, correctly rounded as C's


@pytest.mark.parametrize(
    ("fields", "counters", "sums"),
    [
        pytest.param({"req": 2**53 - 2}, {"req": 2}, {}, id="a-count-past-2^53"),
        pytest.param({"lat_sum": 9e299}, {}, {"lat_sum": 2e299}, id="a-sum-past-1e300"),
        pytest.param({}, {}, {"cv_sum": float("nan")}, id="not-a-number"),
    ],
)
def test_counts_the_script_would_refuse_are_left_to_it(
    fields: dict[str, float], counters: dict[str, int], sums: dict[str, float]
) -> None:
    assert written(CellCopy(0, array("H"), array("I"), fields), KEY, {}, counters, sums) is None


def test_copies_past_the_budget_let_the_least_recently_flushed_go() -> None:
    def one() -> CellCopy:
        return CellCopy(0, array("H", [1] * 10), array("I"), {"req": 1})

    size = one().size
    copies = LaneCopies(budget=2 * size)
    keys = [(0, f"f{i}", 1, "control") for i in range(3)]
    copies.keep(keys[0], one())
    copies.keep(keys[1], one())
    copies.keep(keys[0], one())  # flushed again: now the newest
    copies.keep(keys[2], one())
    assert [copies.get(k) is not None for k in keys] == [True, False, True]
    assert copies.size == 2 * size


def test_a_copy_grown_by_a_write_counts_its_new_size() -> None:
    copies = LaneCopies()
    copy = empty()
    copies.keep(KEY, copy)
    write = written(copy, KEY, {COUNT_SLOTS[-1]: 1}, {"req": 1})
    assert write is not None
    copies.applied({KEY: CellLanes([], [], write, learn=False)}, [])
    assert copies.size == copy.size > 0
    assert copy.version == 1


def test_copies_at_their_budget_learn_no_more_cells() -> None:
    held = CellCopy(0, array("H", [1]), array("I"))
    copies = LaneCopies(budget=held.size)
    assert cell_lanes(copies, KEY, made({COUNT_SLOTS[0]: 1})).learn is True
    copies.keep((0, "g", 1, "control"), held)
    assert not copies.has_room()
    assert cell_lanes(copies, KEY, made({COUNT_SLOTS[0]: 1})).learn is False
    assert cell_lanes(LaneCopies(budget=0), KEY, made({COUNT_SLOTS[0]: 1})).learn is False


def test_forgetting_a_partition_lets_its_copies_alone_go() -> None:
    copies = LaneCopies()
    copies.keep((0, "f", 1, "control"), empty())
    copies.keep((1, "f", 1, "control"), empty())
    copies.forget(0)
    assert copies.get((0, "f", 1, "control")) is None
    assert copies.get((1, "f", 1, "control")) is not None


def test_cells_handed_back_are_held_and_those_not_whole_words_or_numbers_are_not() -> None:
    copies = LaneCopies()
    keys = [(0, "f", 1, "control"), (0, "f", 1, "treatment"), (0, "f", 2, "control")]
    lanes = {k: CellLanes([0], [1], None, learn=True) for k in keys}
    row = [b"req", b"7", b"lat_sum", b"1.25", b"conv:signup", b"1", b"wu", b"3", b"lv", b"4"]
    learned = [
        *(1, 4, b"\x00\x01\x00\x02", b"", row),
        *(2, 9, b"\x00\x01\x00", b"", []),
        *(3, 9, b"", b"", [b"req", b"many"]),
    ]
    copies.applied(lanes, learned)
    held = copies.get(keys[0])
    assert held is not None
    assert (held.version, list(held.low)) == (4, [1, 2])
    # The hash's own counts: a named conversion's and the watched units' are the script's
    assert held.fields == {"req": 7, "lat_sum": 1.25}
    assert copies.get(keys[1]) is None
    assert copies.get(keys[2]) is None
