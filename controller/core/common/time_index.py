"""Whether a broker's time index agrees with the records around the offset it named.

Kafka's ListOffsets by timestamp (``offsets_for_times``) names, for an instant
and a partition, the first offset stamped at or after it: every record before
that offset is stamped earlier (the broker skips whole batches whose largest
timestamp is earlier, then records within the batch), and the record at it is
not. Not every Kafka-compatible broker keeps a time index: one may name the
partition's first offset for any instant, or offset 0 for an instant after its
last record. Trusting such an answer reads the wrong records (or none at all)
without a word, so a reader checks the records just around each answer and
reads a contradicted partition whole instead, filtering by timestamp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class Stamped:
    """A record's offset and Kafka timestamp, as read."""

    offset: int
    timestamp_ms: int


def first_at_or_after(answer: int | None, *, begin: int, end: int) -> int:
    """The broker's answer as an offset in ``[begin, end]``: ``end`` when it named none.

    An offset outside the partition is kept as it is, for :func:`contradiction` to name.
    """
    return end if answer is None else answer


def probe_from(offset: int, *, begin: int, end: int) -> int | None:
    """Where to read the records around ``offset``: the one before it, else the first;
    None in an empty partition (nothing to contradict)."""
    if begin >= end:
        return None
    return max(begin, min(offset, end) - 1)


def contradiction(
    at_ms: int, offset: int, *, begin: int, end: int, around: Sequence[Stamped]
) -> str | None:
    """Why the records ``around`` (read in order from :func:`probe_from`) contradict the
    answer that ``offset`` is the first stamped at or after ``at_ms`` in a partition holding
    ``[begin, end)``; None when they agree with it.
    """
    if begin >= end:
        return None if offset in (begin, end) else f"offset {offset} in an empty partition"
    if not begin <= offset <= end:
        return f"offset {offset} outside the partition's {begin}..{end}"
    before = [r for r in around if r.offset < offset]
    after = [r for r in around if r.offset >= offset]
    if before and before[-1].timestamp_ms >= at_ms:
        last = before[-1]
        return f"offset {last.offset}, before it, is stamped {instant(last.timestamp_ms)}"
    if offset < end and after and after[0].timestamp_ms < at_ms:
        first = after[0]
        return f"offset {first.offset} is stamped {instant(first.timestamp_ms)}, earlier"
    return None


def instant(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 in UTC, as an operator reads them."""
    try:
        at = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return f"{ms} ms"
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
