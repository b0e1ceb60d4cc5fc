"""Offsets a fetch reads past without a record: transaction markers and aborted transactions.

A Kafka transaction ends with a marker that takes an offset and is never handed
to a consumer, and a consumer that reads committed is never handed an aborted
transaction's records either. Counted through the last record, a partition
whose log ends with either would stay behind the broker's log end for good,
and a stage waiting for it would never move. The consumer's position steps
over them (:meth:`~controller.ports.EventSource.read_to`), so after each fetch
ingest moves each owned partition's next offset up to it, in the flush that
stores the counts (:meth:`~.held_work.HeldWork.read_on`): exactly once, as
any offset.

A position past the records the same fetch served is that fetch's reading,
taken as it is. A position that moved with no record served may also be the
client's reset after an out-of-range fetch (the log lost what was stored), so
it is checked first as a record served there would be
(:meth:`~.holding.Holding.at_skip`): a log that now starts past the stored
offset is held, never skipped.
"""

from __future__ import annotations

from enum import Enum


class Past(Enum):
    """How ingest takes where a fetch left a partition."""

    NOTHING = "nothing"
    """Not past what was read: nothing to store."""
    TAKEN = "taken"
    """Past the records the same fetch served: stored with them."""
    CHECKED = "checked"
    """Moved with no record served: stored once the log is checked."""


def read_past(at: int | None, to: int | None, *, served: bool) -> Past:
    """How to take a fetch that left a partition at ``to`` (None: unknown), read so far up to
    ``at`` (None: nothing read nor stored), which ``served`` records of it."""
    if to is None or to <= (at or 0):
        return Past.NOTHING
    return Past.TAKEN if served and at is not None else Past.CHECKED
