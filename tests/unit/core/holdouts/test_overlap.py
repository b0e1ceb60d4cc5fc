"""One unit under several flags: its units counted once, from each flag's and their union."""

from __future__ import annotations

import pytest

from controller.core.holdouts.overlap import overlap_of


@pytest.mark.parametrize(
    ("per_flag", "union", "distinct", "ratio"),
    [
        ([1_000, 1_000], 1_000, 1_000, 2.0),  # the same people under both flags
        ([1_000, 1_000], 2_000, 2_000, 1.0),  # nobody under both
        ([1_000, 1_000], 1_500, 1_500, 4 / 3),  # half of each under both
        ([1_000] * 3, 1_000, 1_000, 3.0),
        ([2_000, 1_900, 1_922], 2_840, 2_840, 5_822 / 2_840),
        ([1_000, 1_000], 2_010, 2_000, 1.0),  # a HyperLogLog's error above the sum
        ([1_000, 400], 990, 1_000, 1.4),  # ...below one flag's count
        ([1_000, 400], None, 1_400, 1.0),  # no union read: different people
        ([0, 0], 0, 0, 1.0),
        ([], None, 0, 1.0),
    ],
)
def test_a_groups_units_are_each_counted_once_over_the_flags(
    per_flag: list[int], union: int | None, distinct: int, ratio: float
) -> None:
    found = overlap_of(per_flag, union)
    assert (found.counted, found.distinct) == (sum(per_flag), distinct)
    assert found.ratio == pytest.approx(ratio)
    assert max(per_flag, default=0) <= found.distinct <= found.counted
