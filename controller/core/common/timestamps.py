"""Message timestamps: epoch milliseconds or aware datetimes, as one type."""

from __future__ import annotations

from datetime import UTC, datetime


def as_datetime(ts: float | datetime) -> datetime:
    """A message's ``ts`` as an aware datetime: epoch milliseconds are read as UTC."""
    return ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts / 1000, tz=UTC)


def iso_or_none(value: object) -> str | None:
    """``value`` (epoch milliseconds or an ISO 8601 string) as ISO 8601, or None if it is
    neither or cannot be read: what a report shows of a time a message may have damaged."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return as_datetime(value).isoformat()
        if isinstance(value, str):
            return datetime.fromisoformat(value).isoformat()
    except (ValueError, OverflowError, OSError):
        return None
    return None
