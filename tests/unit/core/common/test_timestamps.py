"""Times as people read them: one form for every text (reports, ``status``, the gate's words)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.core.common import clock_text


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2026-11-22T10:01:40.123456+00:00", "2026-11-22 10:01:40 UTC"),
        ("2026-11-22T11:01:40+01:00", "2026-11-22 11:01:40 +0100"),
        ("2026-11-22T10:01:40", "2026-11-22 10:01:40"),
        (datetime(2026, 11, 28, 20, 15, 3, 123456, tzinfo=UTC), "2026-11-28 20:15:03 UTC"),
        ("yesterday", "yesterday"),
        (None, "-"),
    ],
)
def test_times_read_as_people_read_them(moment: datetime | str | None, expected: str) -> None:
    assert clock_text(moment) == expected
