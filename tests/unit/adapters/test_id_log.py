"""The owner's copy of an events partition's counted ids forgets as the flush script does."""

from __future__ import annotations

import pytest

from controller.adapters.redis.id_log import IdLog, entry, parse

Batches = list[tuple[int, list[str]]]


@pytest.mark.parametrize(
    ("window", "batches", "now", "asked", "counted"),
    [
        # (window ms, most ids), [(applied at ms, ids)...], checked at ms: which are known
        ((10_000, 1000), [(0, ["a"])], 5_000, ["a", "b"], {"a"}),
        ((10_000, 1000), [(0, ["a"])], 10_000, ["a"], {"a"}),  # the window's last instant
        ((10_000, 1000), [(0, ["a"])], 10_001, ["a"], set()),  # past it
        ((10_000, 1000), [(0, ["a"]), (8_000, ["b"])], 12_000, ["a", "b"], {"b"}),
        # past the most ids the oldest batch goes, once the newer ones alone hold them
        ((3_600_000, 3), [(1, ["a"]), (2, ["b"]), (3, ["c"]), (4, ["d"])], 5, ["a", "b"], {"b"}),
        # a batch is kept whole: the newer ones hold 2 < 3, so "a" is still known
        ((3_600_000, 3), [(1, ["a", "b"]), (2, ["c", "d"])], 5, ["a", "c"], {"a", "c"}),
        ((3_600_000, 3), [(1, ["a", "b"]), (2, ["c", "d", "e"])], 5, ["a", "e"], {"e"}),
    ],
)
def test_ids_are_known_within_the_window_and_while_newer_batches_hold_fewer_than_the_most(
    window: tuple[int, int], batches: Batches, now: int, asked: list[str], counted: set[str]
) -> None:
    log = IdLog(window_ms=window[0], max_ids=window[1])
    for at, ids in batches:
        log.add(at, ids)
    assert log.counted(asked, now) == counted


def test_a_list_read_back_is_the_same_copy_and_entries_not_ours_are_skipped() -> None:
    raw = [entry(1, ["a", "b"]), b"junk", b"7 2 \xc1", entry(2, ["c"])]
    log = IdLog.loaded(raw, window_ms=10, max_ids=100)
    assert len(log) == 3
    assert log.counted(["a", "c", "z"], 5) == {"a", "c"}
    assert parse(entry(3, ["x y", ""])) == (3, ["x y", ""])
