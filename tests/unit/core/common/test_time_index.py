"""A broker's time index checked against the records around the offset it names."""

from __future__ import annotations

import pytest

from controller.core.common.time_index import (
    Stamped,
    contradiction,
    first_at_or_after,
    instant,
    probe_from,
)

T = 1_767_225_600_000
"""The instant asked for, 2026-01-01T00:00:00Z."""


@pytest.mark.parametrize(
    ("answer", "begin", "end", "expected"),
    [
        (None, 0, 8, 8),  # no record at or after: the partition's end
        (3, 0, 8, 3),
        (0, 0, 0, 0),
        (12, 0, 8, 12),  # kept, for the check to name
    ],
)
def test_an_answer_is_an_offset(answer: int | None, begin: int, end: int, expected: int) -> None:
    assert first_at_or_after(answer, begin=begin, end=end) == expected


@pytest.mark.parametrize(
    ("offset", "begin", "end", "expected"),
    [
        (3, 0, 8, 2),  # the record before, then the one at it
        (0, 0, 8, 0),  # the first: no record before
        (5, 5, 8, 5),  # the log starts at 5 (retention)
        (8, 0, 8, 7),  # none at or after: the last record
        (12, 0, 8, 7),
        (0, 0, 0, None),  # empty: nothing to read
        (4, 4, 4, None),
    ],
)
def test_where_the_records_around_an_answer_are_read(
    offset: int, begin: int, end: int, expected: int | None
) -> None:
    assert probe_from(offset, begin=begin, end=end) == expected


def _around(*stamps: tuple[int, int]) -> list[Stamped]:
    return [Stamped(offset, T + delta) for offset, delta in stamps]


@pytest.mark.parametrize(
    ("offset", "begin", "end", "around", "wrong"),
    [
        # Kafka's answers: the record before is earlier, the one at it is not
        (3, 0, 8, _around((2, -1), (3, 0)), None),
        (3, 0, 8, _around((2, -5_000), (3, 2_000)), None),
        (0, 0, 8, _around((0, 0), (1, -9_000)), None),  # a clock that went back after it
        (8, 0, 8, _around((7, -1)), None),  # none at or after: the last is earlier
        (0, 0, 0, [], None),  # an empty partition
        (3, 0, 8, _around((3, 10)), None),  # offset 2 compacted away
        # the embedded broker's answers: offset 0 whatever the instant
        (0, 0, 8, _around((0, -10_000), (1, -9_000)), "offset 0 is stamped"),
        (0, 0, 8, _around((0, -1)), "offset 0 is stamped 2025-12-31T23:59:59.999Z, earlier"),
        # a record before the answer stamped at or after the instant
        (3, 0, 8, _around((2, 0), (3, 1)), "offset 2, before it, is stamped"),
        (8, 0, 8, _around((7, 5)), "offset 7, before it"),  # named none, the last is later
        (9, 0, 8, [], "outside the partition's 0..8"),
        (2, 5, 8, [], "outside"),
        (3, 0, 0, [], "offset 3 in an empty partition"),
    ],
)
def test_an_answer_the_records_around_it_contradict_is_named(
    offset: int, begin: int, end: int, around: list[Stamped], wrong: str | None
) -> None:
    found = contradiction(T, offset, begin=begin, end=end, around=around)
    if wrong is None:
        assert found is None
    else:
        assert found is not None
        assert wrong in found


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (T, "2026-01-01T00:00:00.000Z"),
        (T + 1, "2026-01-01T00:00:00.001Z"),
        (10**20, "100000000000000000000 ms"),  # past the calendar: as the broker gave it
    ],
)
def test_an_instant_reads_as_rfc_3339(ms: int, text: str) -> None:
    assert instant(ms) == text
