"""From where a partition of an OTLP topic must be read again after a restart, for its joins.

The join buffer (:mod:`.joining`) holds what a record leaves for a later one to complete
(a span a late evaluation walks up to, an evaluation waiting for its span, a trace's
evaluations and parked conversions) for the join window, measured on the records' own
times. The record's counts are flushed at once; what it left waits in memory. So beside the
counted offset each flush stores the *rejoin* offset: the first record whose leftovers may
still be in the buffer. A restart, or a new owner, reads the records from there to the
counted offset again for their joins only (see ``Translator.spans(replaying=True)``).

:class:`RejoinMarks` keeps, per partition, the offsets of the records folded within the
window: one mark per record time that is later than the last one kept (a record no later
than the mark before it leaves nothing that outlives that mark's record), so a partition
holds at most one mark per millisecond of the window. Pure: the times are the records'.
"""

from __future__ import annotations

from collections import deque


class RejoinMarks:
    """The records folded within the join window, per partition, as (offset, time) marks."""

    __slots__ = ("_marks", "_now", "_window")

    def __init__(self, *, window_ms: int) -> None:
        self._window = window_ms
        self._marks: dict[int, deque[tuple[int, int]]] = {}
        self._now = 0
        """The latest record time seen: the buffer expires what is a window older."""

    def folded(self, partition: int, offset: int, at_ms: int) -> None:
        """A record of ``partition`` at ``offset`` was folded at time ``at_ms``."""
        marks = self._marks.setdefault(partition, deque())
        if not marks or (offset > marks[-1][0] and at_ms > marks[-1][1]):
            marks.append((offset, at_ms))
        self._now = max(self._now, at_ms)

    def position(self, partition: int, next_offset: int) -> int:
        """The first offset of ``partition`` whose record may still have something waiting
        in the buffer; ``next_offset`` when none may."""
        marks = self._marks.get(partition)
        if not marks:
            return next_offset
        expired = self._now - self._window
        while marks and marks[0][1] <= expired:
            marks.popleft()
        return marks[0][0] if marks else next_offset

    def forget(self, partition: int) -> None:
        """A new claim reads ``partition`` from its rejoin offset: the marks start again (a
        record folded again under the same claim, as a refused flush's are, adds none)."""
        self._marks.pop(partition, None)
