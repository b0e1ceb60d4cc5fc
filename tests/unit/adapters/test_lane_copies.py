"""The owner's copies of its cells' strings of lanes: a copy's write holds what ``BITFIELD``
would have made of the same counts, byte for byte, and the copies a store keeps stay
within their budget and go with their partition."""

from __future__ import annotations

import random
import struct
from array import array

import pytest

from controller.adapters.redis.lanes import (
    RAW_FROM,
    CellCopy,
    CellLanes,
    LaneCopies,
    cell_lanes,
    written,
)
from controller.adapters.redis.layout import LANE_COUNT, SLOT_COUNT, lane_of_slots
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
    version, low_size, high_size, low_at, low, high_at, high = write.form
    assert (version, low_size, high_size, low_at, high_at) == (0, 0, 0, 0, 0)
    assert (low, high) == bitfield(by_lane(counts))
    assert bool(high) is wraps
    assert write.after.version == 1
    assert strings(write.after) == (low, high)


def test_writes_one_after_another_add_up_as_one_write_of_their_sum() -> None:
    rng = random.Random(7)
    copy, total = empty(), dict[int, int]()
    for _ in range(40):
        counts = {s: rng.choice((1, 2, 300, 40_000)) for s in rng.sample(COUNT_SLOTS, 30)}
        write = written(copy, KEY, counts)
        assert write is not None
        assert write.form[:3] == (copy.version, len(copy.low) * 2, len(copy.high) * 4)
        copy = write.after
        for slot, n in counts.items():
            total[LANE_OF[slot]] = total.get(LANE_OF[slot], 0) + n
    low, high = bitfield(total)
    assert strings(copy) == (low, high)
    assert copy.version == 40


def test_a_high_word_past_32_bits_is_left_to_bitfield() -> None:
    slot = COUNT_SLOTS[3]
    assert written(empty(), KEY, {slot: 2**48}) is None
    assert written(empty(), KEY, {slot: 2**48 - 1}) is not None


def test_a_write_leaves_the_copy_it_was_made_from_as_it_was() -> None:
    copy = written(empty(), KEY, {COUNT_SLOTS[0]: 2})
    assert copy is not None
    before = strings(copy.after)
    assert written(copy.after, KEY, {COUNT_SLOTS[0]: 0x20000, COUNT_SLOTS[90]: 1}) is not None
    assert strings(copy.after) == before


def test_a_float_slot_names_a_lane_past_the_last() -> None:
    assert {LANE_OF[s] for s in FLOAT_SLOTS} == {LANE_COUNT}
    assert max(LANE_OF[s] for s in COUNT_SLOTS) == LANE_COUNT - 1


def test_a_cell_without_a_copy_goes_by_bitfield_and_learns() -> None:
    counts = {COUNT_SLOTS[1]: 4}
    lanes = cell_lanes(LaneCopies(), KEY, counts)
    assert (lanes.offsets, lanes.adds, lanes.write, lanes.learn) == (
        [16 * LANE_OF[COUNT_SLOTS[1]]],
        [4],
        None,
        True,
    )
    # A store that keeps no copies (a partition several owners write) never learns
    assert cell_lanes(None, KEY, counts).learn is False


def test_a_cell_with_a_copy_is_written_from_it_and_its_bytes_go_as_arguments() -> None:
    copies = LaneCopies()
    copies.keep(KEY, empty())
    lanes = cell_lanes(copies, KEY, {COUNT_SLOTS[1]: 0x10001})
    assert lanes.write is not None
    assert (lanes.offsets, lanes.learn) == ([], False)
    raw = [b"x"]
    _, _, form, _ = lanes.arguments(raw)
    assert (form[4], form[6]) == (RAW_FROM + 1, RAW_FROM + 2)
    assert raw[1:] == [lanes.write.form[4], lanes.write.form[6]]
    # No counts: nothing to write, and the copy stays of the version Redis holds
    assert cell_lanes(copies, KEY, {}) == CellLanes([], [], None, learn=False)


def test_copies_past_the_budget_let_the_least_recently_flushed_go() -> None:
    one = written(empty(), KEY, {COUNT_SLOTS[0]: 1})
    assert one is not None
    size = one.after.size
    copies = LaneCopies(budget=2 * size)
    keys = [(0, f"f{i}", 1, "control") for i in range(3)]
    copies.keep(keys[0], one.after)
    copies.keep(keys[1], one.after)
    copies.keep(keys[0], one.after)  # flushed again: now the newest
    copies.keep(keys[2], one.after)
    assert [copies.get(k) is not None for k in keys] == [True, False, True]
    assert copies.size == 2 * size


def test_forgetting_a_partition_lets_its_copies_alone_go() -> None:
    copies = LaneCopies()
    copies.keep((0, "f", 1, "control"), empty())
    copies.keep((1, "f", 1, "control"), empty())
    copies.forget(0)
    assert copies.get((0, "f", 1, "control")) is None
    assert copies.get((1, "f", 1, "control")) is not None


def test_strings_handed_back_are_held_and_those_not_of_whole_words_are_not() -> None:
    copies = LaneCopies()
    keys = [(0, "f", 1, "control"), (0, "f", 1, "treatment")]
    lanes = {k: CellLanes([0], [1], None, learn=True) for k in keys}
    copies.applied(lanes, [1, 4, b"\x00\x01\x00\x02", b"", 2, 9, b"\x00\x01\x00", b""])
    held = copies.get(keys[0])
    assert held is not None
    assert (held.version, list(held.low)) == (4, [1, 2])
    assert copies.get(keys[1]) is None
