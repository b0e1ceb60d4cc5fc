"""Message timestamps: epoch milliseconds or aware datetimes, as one type; times for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


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


def clock_text(moment: datetime | str | None) -> str:
    """A time as people read it, to the second, in the one form every text writes:
    ``2026-11-22 21:24:12 UTC`` (another offset kept: ``2026-11-22 22:24:12 +0100``).
    An ISO 8601 string is read first (one that cannot be read is shown cut to 40
    characters); None reads ``-``."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        text = moment
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return text[:40]
    zone = "UTC" if moment.utcoffset() == timedelta(0) else moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}".rstrip()
