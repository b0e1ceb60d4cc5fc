"""One arm's failures by fingerprint, as the store counts them (docs/architecture.md, "What
broke").

The store counts each named crash, exception and failed request under its fingerprint
while the flag keeps it, in the arm's unit buckets (``f:<fingerprint>.<bucket>``), beside
its name (``t:<fingerprint>``) and one example (``x:<fingerprint>``). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.stats.units import UNIT_BUCKETS

COUNT_PREFIX, NAME_PREFIX, EXAMPLE_PREFIX = "f:", "t:", "x:"
"""A fingerprint's fields in an arm's hash: its count in a bucket, its name, its example."""
REQUEST_MARK = "r"
"""What a failed request's fingerprint id begins with (``r`` and 16 hex characters), where a
crash's or an exception's is 16 hex characters alone: a failed request is no exception."""


def is_request(key: str) -> bool:
    """Whether the fingerprint ``key`` names failed requests (else crashes and exceptions)."""
    return key.startswith(REQUEST_MARK)


@dataclass(frozen=True, slots=True)
class FailureCounts:
    """One fingerprint's failures in one arm: its name, an example, its count by unit bucket."""

    name: str
    example: str = ""
    buckets: tuple[int, ...] = (0,) * UNIT_BUCKETS

    @property
    def total(self) -> int:
        return sum(self.buckets)

    def plus(self, other: FailureCounts) -> FailureCounts:
        """Both counts added, bucket by bucket; the name and example first known kept."""
        return FailureCounts(
            self.name or other.name,
            self.example or other.example,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )


def failures_of(fields: Mapping[str, object]) -> dict[str, FailureCounts]:
    """The fingerprints in an arm's fields (others ignored); a count in no bucket of this
    layout, or not a whole number, is left out, as is a fingerprint with no count."""
    counts: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    for field, value in fields.items():
        head, fingerprint = field[:2], field[2:]
        if head == COUNT_PREFIX:
            key, _, bucket = fingerprint.rpartition(".")
            if not (key and bucket.isdigit() and int(bucket) < UNIT_BUCKETS):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                continue
            counts.setdefault(key, [0] * UNIT_BUCKETS)[int(bucket)] += int(value)
        elif head in (NAME_PREFIX, EXAMPLE_PREFIX):
            texts[field] = (
                value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            )
    return {
        key: FailureCounts(
            texts.get(NAME_PREFIX + key, "") or key,
            texts.get(EXAMPLE_PREFIX + key, ""),
            tuple(column),
        )
        for key, column in counts.items()
        if any(column)
    }


def merged_failures(
    mine: Mapping[str, FailureCounts], theirs: Mapping[str, FailureCounts]
) -> dict[str, FailureCounts]:
    """Two arms' (or partitions') failures added, fingerprint by fingerprint."""
    out = dict(mine)
    for key, got in theirs.items():
        out[key] = out[key].plus(got) if key in out else got
    return out
