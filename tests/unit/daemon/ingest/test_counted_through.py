"""When a partition is counted through: its stored offset reached the last fetch's end."""

from __future__ import annotations

import pytest

from controller.daemon.ingest.counted import caught_up


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
