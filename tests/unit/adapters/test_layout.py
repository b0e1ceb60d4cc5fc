"""The unit buckets' strings of lanes: where each count goes, and where a read puts it."""

from __future__ import annotations

import pytest

from controller.adapters.redis.cells.layout import (
    HIGH_WIDTH,
    LANE_COUNT,
    LANE_KINDS,
    LANE_WIDTH,
    SLOT_SOURCES,
    SUM_FIELDS,
    lane_offsets,
    with_layout,
)
from controller.core.stats.units import KIND_COUNT, KINDS, SUM_KINDS, UNIT_BUCKETS

LANES = LANE_COUNT


def slot(bucket: int, kind: str) -> int:
    return bucket * KIND_COUNT + KINDS.index(kind)


def lane(bucket: int, kind: str) -> int:
    return LANE_KINDS.index(kind) * UNIT_BUCKETS + bucket


def test_the_first_lanes_keep_their_place_and_every_count_kind_has_one() -> None:
    assert LANE_KINDS[:5] == ("x", "r", "e", "c", "n")
    assert LANE_KINDS[5:29] == tuple(f"l{j}" for j in range(24))
    assert set(LANE_KINDS) == set(KINDS) - set(SUM_KINDS)
    assert len(set(LANE_KINDS)) == len(LANE_KINDS)


@pytest.mark.parametrize(
    ("bucket", "kind", "at"),
    [
        (0, "x", 0),
        (63, "x", 63),
        (0, "r", UNIT_BUCKETS),
        (5, "e", 2 * UNIT_BUCKETS + 5),
        (7, "l0", 5 * UNIT_BUCKETS + 7),
        (63, "l23", 29 * UNIT_BUCKETS - 1),
    ],
)
def test_a_count_goes_to_its_kind_s_lane_of_its_bucket(bucket: int, kind: str, at: int) -> None:
    assert lane_offsets([slot(bucket, kind)]) == [LANE_WIDTH * at]


def test_a_float_sum_has_no_lane() -> None:
    with pytest.raises(ValueError, match=r"float sum.s slot"):
        lane_offsets([slot(3, "s")])


def test_the_scripts_get_the_lanes_bits_and_each_sums_place() -> None:
    script = with_layout(
        "local LANE_BITS = 0 -- x\nlocal LANE_WIDTH = 0 -- y\nlocal HIGH_WIDTH = 0 -- z\n"
        "local SUM_COUNT = 0\nlocal UNIT_SUMS = {}\n"
    )
    lines = dict(line.split(" = ", 1) for line in script.splitlines())
    assert (LANE_WIDTH, HIGH_WIDTH) == (16, 32)
    assert lines["local LANE_BITS"] == f"{LANE_WIDTH * LANES} -- x"
    assert lines["local LANE_WIDTH"] == f"{LANE_WIDTH} -- y"
    assert lines["local HIGH_WIDTH"] == f"{HIGH_WIDTH} -- z"
    assert lines["local SUM_COUNT"] == str(len(SUM_FIELDS))
    sums = lines["local UNIT_SUMS"]
    assert sums.count("] = ") == UNIT_BUCKETS * len(SUM_KINDS)
    assert f"['u7.s'] = {SUM_FIELDS.index('u7.s') + 1}" in sums


def test_every_slot_comes_from_its_lane_or_its_float_sum() -> None:
    assert len(SLOT_SOURCES) == UNIT_BUCKETS * KIND_COUNT
    assert sorted(SLOT_SOURCES) == list(range(LANES + len(SUM_FIELDS)))
    assert SLOT_SOURCES[slot(5, "e")] == lane(5, "e")
    assert SLOT_SOURCES[slot(63, LANE_KINDS[-1])] == lane(63, LANE_KINDS[-1])
    assert SLOT_SOURCES[slot(7, "s")] == LANES + SUM_FIELDS.index("u7.s")
