"""The unit buckets' strings of lanes: where each count goes, and how strings add up."""

from __future__ import annotations

import pytest

from controller.adapters.redis.layout import (
    LANE_COUNT,
    LANE_KINDS,
    SUM_FIELDS,
    lane_offsets,
    unit_totals,
)
from controller.core.common import StoreError
from controller.core.stats.units import KIND_COUNT, KINDS, SUM_KINDS, UNIT_BUCKETS

LANES = LANE_COUNT


def lanes(values: dict[int, int]) -> list[int]:
    """Lanes as a read adds them up: as long as the highest lane holding a count."""
    out = [0] * (max(values, default=-1) + 1)
    for lane, n in values.items():
        out[lane] = n
    return out


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
    assert lane_offsets([slot(bucket, kind)]) == [64 * at]


def test_a_float_sum_has_no_lane() -> None:
    with pytest.raises(ValueError, match=r"float sum.s slot"):
        lane_offsets([slot(3, "s")])


def test_nothing_stored_reads_as_no_buckets() -> None:
    assert unit_totals([], ()) is None
    assert unit_totals([], (0.0,) * len(SUM_FIELDS)) is None


@pytest.mark.parametrize(
    ("added", "want"),
    [
        ({lane(0, "x"): 3, lane(9, "r"): 7}, {slot(0, "x"): 3, slot(9, "r"): 7}),
        ({lane(1, "e"): 2**53, lane(2, "l3"): 1}, {slot(1, "e"): 2**53, slot(2, "l3"): 1}),
        # The last lane of all, beside the first.
        ({LANES - 1: 4, 0: 1}, {slot(UNIT_BUCKETS - 1, LANE_KINDS[-1]): 4, slot(0, "x"): 1}),
        # Lanes as far as the highest holding a count: the rest are zeros.
        ({3: 8}, {slot(3, "x"): 8}),
    ],
)
def test_lanes_go_to_the_cores_slots(added: dict[int, int], want: dict[int, int]) -> None:
    totals = unit_totals(lanes(added), ())
    assert totals is not None
    assert len(totals) == UNIT_BUCKETS * KIND_COUNT
    assert {i: n for i, n in enumerate(totals) if n} == want


def test_the_sums_take_their_buckets_slots() -> None:
    sums = tuple(float(b) / 4 for b in range(UNIT_BUCKETS))
    totals = unit_totals([], sums)
    assert totals is not None
    assert [totals[slot(b, "s")] for b in range(UNIT_BUCKETS)] == list(sums)
    assert sum(totals) == sum(sums)


@pytest.mark.parametrize(
    ("added", "sums", "why"),
    [
        ([0] * (LANES + 1), (), "more than"),
        (lanes({3: -1}), (), "negative count"),
        ([1], (1.0,), "1 unit bucket sums"),
    ],
)
def test_what_no_flush_writes_is_a_store_error(
    added: list[int], sums: tuple[float, ...], why: str
) -> None:
    with pytest.raises(StoreError, match=why):
        unit_totals(added, sums)
