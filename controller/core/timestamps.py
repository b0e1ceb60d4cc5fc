"""Message timestamps: epoch milliseconds or aware datetimes, as one type."""

from __future__ import annotations

from datetime import UTC, datetime


def as_datetime(ts: float | datetime) -> datetime:
    """A message's ``ts`` as an aware datetime: epoch milliseconds are read as UTC."""
    return ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts / 1000, tz=UTC)
