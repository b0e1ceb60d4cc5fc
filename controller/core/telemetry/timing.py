"""When a span or an evaluation may have happened: the plausible window around "now".

A span that ends before it starts would count as a 0 ms request, and one that
ends at 2^63 ns as a day-long request dated 2262; an evaluation far from now
would be attributed to whichever version its time falls in. Neither is an
instant any app produced, so the translator refuses them (``bad_time``),
each alone, its siblings counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from controller.core.common import MAX_LATENCY_MS
from controller.core.telemetry.signals import Span

MAX_AHEAD_MS: Final = 10 * 60 * 1000
"""How far past the receiver's now a span may end: hosts' clocks drift by seconds; a host
further ahead than this has a wrong clock, and its times would count in a stage that has
not begun."""
MAX_AGE_MS: Final = 24 * 60 * 60 * 1000
"""How long before the receiver's now a span may have ended: an SDK exports within
seconds and a Collector's retries give up after minutes, but a persistent queue may hold
telemetry through an outage; a day is the longest wait honoured. Older, it would count for
a stage long decided. On the Collector's topics "now" is the record's timestamp, so a
replay of old records is read at the time they were written."""
_NS_PER_MS: Final = 1_000_000
_MAX_DURATION_NS: Final = MAX_LATENCY_MS * _NS_PER_MS


@dataclass(frozen=True, slots=True)
class Window:
    """The plausible instants around ``now_ms``, in ns."""

    now_ms: int
    earliest_ns: int
    latest_ns: int

    @classmethod
    def around(cls, now_ms: int) -> Window:
        earliest = (now_ms - MAX_AGE_MS) * _NS_PER_MS
        return cls(now_ms, earliest, (now_ms + MAX_AHEAD_MS + 1) * _NS_PER_MS - 1)

    def holds(self, time_ns: int) -> bool:
        return self.earliest_ns <= time_ns <= self.latest_ns

    def fault(self, time_ns: int, what: str = "is") -> str:
        """Why ``time_ns`` is outside the window, in words (for an instant it does not hold)."""
        ms = time_ns // _NS_PER_MS
        if ms > self.now_ms:
            return f"{what} {(ms - self.now_ms) // 1000} s after the time it arrived"
        return f"{what} {(self.now_ms - ms) // 1000} s before the time it arrived"

    def span_fault(self, span: Span) -> str | None:
        """Why a span's times cannot be a request's, or None: it ends before it starts, lasts
        longer than the contract's longest request (a day), or ends outside the window."""
        start, end = span.start_ns, span.end_ns
        if end < start:
            return f"ends {(start - end) / _NS_PER_MS:.3f} ms before it starts"
        if end - start > _MAX_DURATION_NS:
            return f"lasts {(end - start) // _NS_PER_MS} ms, longer than a day"
        return None if self.holds(end) else self.fault(end, "ends")


def plausible_spans(
    spans: list[Span], window: Window, refuse: Callable[[int, str], None]
) -> list[tuple[int, Span]]:
    """The spans whose times can be a request's, with their index; ``refuse`` the others."""
    kept: list[tuple[int, Span]] = []
    earliest, latest = window.earliest_ns, window.latest_ns
    for index, span in enumerate(spans):
        start, end = span.start_ns, span.end_ns
        # the common case in one expression: this runs for every span of every export
        if start <= end and end - start <= _MAX_DURATION_NS and earliest <= end <= latest:
            kept.append((index, span))
        else:
            refuse(index, f"span {span.name[:64]!r} {window.span_fault(span)}")
    return kept
