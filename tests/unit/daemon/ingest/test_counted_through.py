"""When a partition is counted through: its stored offset reached a noted fetch's end."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from controller.daemon.ingest.counted import NOTED, CountedThrough, caught_up
from controller.daemon.ingest.partitions import Owned, Partitions
from controller.daemon.metrics import Metrics


@pytest.mark.parametrize(
    ("stored", "highwater", "caught"),
    [
        (10, 10, True),
        (11, 10, True),  # the log ended before the stored offset: held elsewhere, not lagging
        (9, 10, False),
        (None, 0, True),  # an empty partition never flushed
        (None, 3, False),
        (10, None, False),  # not fetched since its claim: unknown
    ],
)
def test_caught_up(stored: int | None, highwater: int | None, *, caught: bool) -> None:
    assert caught_up(stored, highwater) is caught


T0 = datetime(2026, 1, 1, tzinfo=UTC)
Step = tuple[float, int | None, int | None, float | None]
"""Seconds after T0, the stored offset, the last fetch's high watermark, and the time
credited as counted through (None: nothing)."""


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([(0, 10, 10, 0), (1, 20, 20, 1)], id="caught up each time: now"),
        pytest.param(
            [(0, 5, 10, None), (1, 10, 20, 0), (2, 20, 30, 1), (3, 30, 40, 2)],
            id="steadily one note behind: the note before",
        ),
        pytest.param(
            [(0, 5, 10, None), (1, 8, 20, None), (2, 15, 30, 0), (3, 31, 31, 3)],
            id="behind, then past several notes: the latest reached",
        ),
        pytest.param([(0, 5, 10, None), (1, 9, 10, None), (2, 10, 10, 2)], id="same end: stands"),
        pytest.param([(0, 0, None, None), (1, 0, None, None)], id="never fetched: never"),
        pytest.param([(0, None, 0, 0)], id="an empty partition never flushed"),
        pytest.param(
            [(0, 5, 10, None), (1, 10, 20, 0), (2, 10, 20, 0), (3, 20, 20, 3)],
            id="a flush that stalls keeps the last credit",
        ),
    ],
)
def test_steady_lag_is_counted_through_a_moment_ago(steps: list[Step]) -> None:
    counted = CountedThrough(None)
    for at, stored, highwater, credited in steps:
        now = T0 + timedelta(seconds=at)
        got = counted.note(now, {3: stored}, {3: highwater}).get(3)
        want = None if credited is None else T0 + timedelta(seconds=credited)
        assert got == want, f"at {at} s"


def test_a_partition_no_longer_owned_is_forgotten() -> None:
    counted = CountedThrough(None)
    counted.note(T0, {1: 0, 2: 0}, {1: 10, 2: 10})
    counted.note(T0 + timedelta(seconds=1), {2: 0}, {2: 10})
    # owned again later: the old note of partition 1 credits nothing
    later = T0 + timedelta(seconds=2)
    assert counted.note(later, {1: 10, 2: 10}, {1: 20, 2: 10}) == {2: later}


def test_a_long_wait_keeps_its_notes_bounded_and_credits_no_later_than_true() -> None:
    counted = CountedThrough(None)
    for second in range(10 * NOTED):  # ingest stopped at 0 while the log grows 10 a second
        counted.note(T0 + timedelta(seconds=second), {0: 0}, {0: 10 * (second + 1)})
    assert len(counted._noted[0]) <= NOTED + 1
    # it catches up to the end it had at second 500: credited at 500 s or a little before
    got = counted.note(T0 + timedelta(seconds=10 * NOTED), {0: 5010}, {0: 10**6})[0]
    assert T0 + timedelta(seconds=500 - 32) <= got <= T0 + timedelta(seconds=500)


class _Store:
    def __init__(self) -> None:
        self.recorded: list[dict[int, datetime]] = []

    async def record(
        self,
        caught: Mapping[int, datetime],
        *,
        partitions: int | None = None,
        owned: Iterable[int] = (),
        owner: str | None = None,
    ) -> None:
        self.recorded.append(dict(caught))


class _Source:
    def __init__(self, ends: dict[int, int]) -> None:
        self.ends = ends

    def highwater(self, partition: int) -> int | None:
        return self.ends.get(partition)

    def partition_count(self) -> int | None:
        return 4


async def test_record_credits_the_owned_partitions_from_the_source() -> None:
    times = iter([T0, T0 + timedelta(seconds=1)])
    store = _Store()
    counted = CountedThrough(store, clock=lambda: next(times))
    parts = Partitions(metrics=Metrics(), stall_after=60)
    parts.owned[0] = Owned(epoch=1, offset=4)
    parts.owned[1] = Owned(epoch=1, offset=9)
    source = _Source({0: 4, 1: 12})
    await counted.record(parts, source)  # type: ignore[arg-type]
    parts.owned[1].offset, source.ends[1] = 12, 20
    await counted.record(parts, source)  # type: ignore[arg-type]
    assert store.recorded == [{0: T0}, {0: T0 + timedelta(seconds=1), 1: T0}]
