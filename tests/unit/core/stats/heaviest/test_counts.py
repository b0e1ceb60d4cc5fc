"""The heaviest units merged over partitions: the bound on what their lists leave out.

A partition's list leaves out two kinds of unit: one it kept with fewer requests than its
last (where the list is full), and one it did not keep at all, being past the store's bound
on units, whose requests it only summed (``unkept``). Either may be missing from the merged
list, so the bound is the larger of the two per partition, added over partitions, and caps
are raised to it.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.stats import (
    HEAVIEST_KEPT,
    ArmAggregate,
    FlagAggregates,
    Heaviest,
    UnitCount,
    capped,
    merged,
    merged_lists,
    partition_list,
)
from controller.core.stats.heaviest.caps import effective_cap

Part = tuple[int, int, int]
"""A partition's list: how many units it lists, its last one's requests, its unkept sum."""


def listed(part: Part, tag: str) -> Heaviest:
    """``n`` units of this partition, the last with ``last`` requests (the others more)."""
    n, last, unkept = part
    rows = [(f"{tag}-{i}", last + n - 1 - i, 0) for i in range(n)]
    return partition_list(rows, full=n >= HEAVIEST_KEPT, unkept=unkept)


FULL = HEAVIEST_KEPT


@pytest.mark.parametrize(
    ("parts", "bound", "unkept"),
    [
        ([(3, 5, 0)], 0, 0),  # every unit listed, exactly
        ([(FULL, 10, 0)], 10, 0),  # a kept unit left out sent at most the last count
        ([(FULL, 10, 4)], 10, 4),  # a unit not kept sent at most 4: the last count is larger
        ([(FULL, 10, 25)], 25, 25),  # ... or 25: larger than the last count
        ([(3, 5, 7)], 7, 7),  # a short list: only a unit not kept is left out
        ([(FULL, 10, 25), (3, 5, 0)], 25, 25),
        ([(FULL, 10, 3), (FULL, 8, 30)], 40, 33),  # each partition's larger, added
        ([(0, 0, 9), (0, 0, 2)], 11, 11),  # nothing listed, all of it unkept
    ],
)
def test_the_bound_is_each_partitions_larger_of_its_last_count_and_its_unkept_sum(
    parts: list[Part], bound: int, unkept: int
) -> None:
    got = merged(listed(part, f"p{i}") for i, part in enumerate(parts))
    assert (got.unlisted_at_most, got.unkept_requests) == (bound, unkept)


def arms(treatment: Heaviest, requests: int = 100_000) -> FlagAggregates:
    return FlagAggregates(
        "f",
        frozenset({1}),
        ArmAggregate(units=5_000, requests=requests, heaviest=treatment),
        ArmAggregate(units=5_000, requests=requests),
    )


@pytest.mark.parametrize(
    ("parts", "cap", "effective"),
    [
        ([(3, 5, 0)], 100, 100),  # nothing left out: the cap as asked
        ([(3, 5, 700)], 100, 700),  # a unit not kept may have sent 700: caps rise to it
        ([(FULL, 50, 0)], 10, 100),  # the last of a full list (50), plus its partition's (50)
        ([(FULL, 50, 30)], 10, 100),  # the unkept (30) below that partition's last: the same
        ([(FULL, 50, 80)], 10, 130),  # the last (50) plus the unkept (80)
        ([(FULL, 50, 80)], 500, 500),
    ],
)
def test_caps_rise_to_what_a_unit_not_kept_may_have_sent(
    parts: list[Part], cap: int, effective: int
) -> None:
    heaviest = merged(listed(part, f"p{i}") for i, part in enumerate(parts))
    assert effective_cap(cap, arms(heaviest)) == effective


def test_capping_keeps_the_unkept_sum_and_the_bound() -> None:
    heaviest = partition_list([("bot", 9_000, 900), ("u", 10, 0)], full=False, unkept=40)
    data, capping = capped(arms(heaviest), 100)
    assert capping.cap == 100
    assert [u.unit for u in capping.units] == ["bot"]
    kept = data.treatment.heaviest
    assert kept.units[0] == UnitCount("bot", 100, 10)
    assert (kept.unlisted_at_most, kept.unkept_requests) == (40, 40)


Rows = list[tuple[str, int, int]]


@pytest.mark.parametrize(
    ("cells", "keep", "units"),
    [
        ([], 3, ()),
        ([([("a", 5, 1), ("b", 7, 0)], False, 0)], 3, (("b", 7, 0), ("a", 5, 1))),
        # summed over cells; ties by id; the keep heaviest only
        (
            [([("a", 5, 1), ("b", 7, 0)], True, 0), ([("a", 2, 2), ("c", 7, 7)], True, 9)],
            2,
            (("a", 7, 3), ("b", 7, 0)),
        ),
        ([([("z", 1, 0)], True, 0), ([], True, 4), ([("y", 1, 1)], False, 2)], 5, None),
    ],
)
def test_a_read_merges_its_cells_lists_as_each_made_a_list_and_merged(
    cells: list[tuple[Rows, bool, int]], keep: int, units: tuple[tuple[str, int, int]] | None
) -> None:
    got = merged_lists(cells, keep)
    want = merged((partition_list(r, full=f, unkept=u) for r, f, u in cells), keep)
    assert got == want
    if units is not None:
        assert got.units == tuple(UnitCount(*u) for u in units)


@given(
    st.lists(
        st.tuples(
            st.lists(
                st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 50), st.integers(0, 50)),
                max_size=8,
                unique_by=lambda row: row[0],
            ),
            st.booleans(),
            st.integers(0, 100),
        ),
        max_size=6,
    ),
    st.integers(1, 10),
)
def test_merged_lists_is_merged_of_each_cells_list(
    cells: list[tuple[Rows, bool, int]], keep: int
) -> None:
    want = merged((partition_list(r, full=f, unkept=u) for r, f, u in cells), keep)
    assert merged_lists(cells, keep) == want
