"""Work folded while a flush is in flight: by partition, under the claim it was read under.

While the flush before runs in Redis, the batches fetched meanwhile are folded on into the
same deltas (up to a bound the loop keeps), so the daemon does not wait on Redis while
records are there to fold and Redis gets one larger flush for them all. So too while the
last flush started less than ``ingest.flush_interval_ms`` ago: events that trickle in
then reach Redis in fewer, larger flushes, whose work per cell more events share.

Each partition's held work ends where the fetch left the consumer, past the transaction
markers and aborted records after its last record (:meth:`HeldWork.read_on`,
:mod:`.read_past`): the flush stores that offset with the counts.
"""

from __future__ import annotations

import time

from controller.core.stats import PartitionDelta, fold
from controller.daemon.ingest.batches import Folding, Work, loose_delta
from controller.daemon.ingest.holding import Holding
from controller.daemon.ingest.partitions import Owned, Partitions
from controller.daemon.ingest.read_past import Past, read_past
from controller.ports import DeadLetter, EventSource, Record
from controller.settings import IngestSettings

HELD_BATCHES = 4
"""How many fetches' worth of records (``max_batch_records`` each) are folded at most
into one flush while the one before it runs or is recent."""


class HeldWork:
    """Folded work not flushed yet, and where each partition's last fetch ended."""

    def __init__(self, folder: Folding, settings: IngestSettings | None = None) -> None:
        """What waits for a later flush is bounded by ``settings``' batches (:data:`HELD_BATCHES`
        of them) and its ``flush_interval_ms``."""
        settings = settings or IngestSettings()
        self._folder = folder
        self._most = HELD_BATCHES * settings.max_batch_records
        self._interval, self._next = settings.flush_interval_ms / 1000, 0.0
        self._held: dict[int, Work] = {}
        self._fetched_to: dict[int, tuple[Owned, int]] = {}
        self._claims: dict[int, Owned] = {}
        """The claim each partition's records were last read under."""

    @property
    def records(self) -> int:
        """How many fetched records are folded and wait for the flush in flight to end."""
        return sum(len(w.records) for w in self._held.values())

    def __bool__(self) -> bool:
        return bool(self._held)

    def waits(self, busy: bool) -> bool:
        """Whether what is held waits for a later flush: one is ``busy`` in flight, or the
        last started within the interval, and fewer than the most records are held."""
        return (busy or time.monotonic() < self._next) and self.records < self._most

    def read_again(self, partition: int, owned: Owned, records: list[Record]) -> list[Record]:
        """The records to fold, once those the claim reads again only for their joins (an
        OTLP topic's, from its rejoin offset to its counted one) went to the folder."""
        if self._claims.get(partition) is not owned:
            self._claims[partition] = owned
            self._folder.claimed(partition)
        rejoin, counted = owned.rejoin, owned.offset
        if rejoin is None or counted is None or records[0].offset >= counted:
            return records
        again = [r for r in records if rejoin <= r.offset < counted]
        if again:
            self._folder.rejoin(partition, again)
        rest = [r for r in records if not rejoin <= r.offset < counted]
        if rest:
            owned.rejoin = None  # the first fresh fold takes what the replay joined
        elif again:
            self._hold_joins(partition, owned, counted)
        return rest

    def _hold_joins(self, partition: int, owned: Owned, counted: int) -> None:
        """Hold what the replay joined with a half read fresh as work of no records, at the
        counted offset: no fresh record may follow to carry it (the other topic's may all
        have been read before this replay)."""
        joins, rejoin = self._folder.loose(partition, counted)
        if not joins:
            return
        held = self._held.get(partition)
        if held is not None and held.owned is owned:  # an earlier fetch of the replay's
            fold(joins, held.delta.cells, seen=held.delta.seen)
            held.delta.rejoin = rejoin
            held.joins += joins
            return
        delta = loose_delta(partition, counted, joins, frozenset(), rejoin)
        self._held[partition] = Work(delta, [], owned, joins)

    def follows(self, partition: int, owned: Owned, first: int) -> bool:
        """Whether a fetch starting at ``first`` goes on right after the last one read under
        the same claim: the log skipped nothing, so it needs no look at the log's ends.

        While a flush is in flight the stored offset lags what was fetched, so without this
        every fetch looked past it and asked the broker where the log starts: a round trip
        per partition and fetch, which on Apache Kafka held ingest near 20,000 events/s."""
        last = self._fetched_to.get(partition)
        return last is not None and last[0] is owned and last[1] == first

    def fold(
        self, partition: int, records: list[Record], owned: Owned, rejected: list[DeadLetter]
    ) -> None:
        """Fold ``records`` on into the partition's held work under the same claim, else anew."""
        self._fetched_to[partition] = (owned, records[-1].offset + 1)
        held = self._held.get(partition)
        if held is not None and held.owned is owned and (held.records or held.joins):
            self._folder.fold(partition, records, rejected, into=held.delta)
            held.records += records
            return
        # No held work, work that only moved the offset (these records move it on), or work
        # read under a claim given up since: that is not flushed.
        delta = self._folder.fold(partition, records, rejected)
        self._held[partition] = Work(delta, list(records), owned)

    def fetched_to(self, partition: int, owned: Owned) -> int | None:
        """Where the reading of ``partition`` under the claim ``owned`` has got to (None:
        nothing read under it yet; the stored offset stands)."""
        last = self._fetched_to.get(partition)
        return last[1] if last is not None and last[0] is owned else None

    async def read_on(
        self,
        claims: dict[int, Owned],
        source: EventSource,
        parts: Partitions,
        holding: Holding | None,
        served: set[int],
    ) -> None:
        """Move each partition of ``claims`` still owned up to where the fetch left it, past the
        markers and aborted records after what was read (:mod:`.read_past`); those the fetch
        ``served`` records of were read on from where the last fetch ended (or checked:
        :meth:`~.holding.Holding.at_fetch`), the others are checked (``holding``) first."""
        for partition, owned in claims.items():
            to = source.read_to(partition)
            at = self.fetched_to(partition, owned)
            past = read_past(owned.offset if at is None else at, to, served=partition in served)
            if past is Past.NOTHING or to is None or not parts.current(partition, owned):
                continue
            if past is Past.CHECKED and holding and await holding.at_skip(partition, owned, to):
                continue
            self.read_past(partition, owned, to)

    def read_past(self, partition: int, owned: Owned, to: int) -> None:
        """The consumer read ``partition`` up to ``to`` past what was folded (transaction
        markers, aborted records): the held work's next offset moves there, so the flush
        stores it with the counts, or else work of no records is held to store it."""
        self._fetched_to[partition] = (owned, to)
        held = self._held.get(partition)
        if held is not None and held.owned is owned:
            held.delta.next_offset = max(held.delta.next_offset, to)
            return
        self._held[partition] = Work(PartitionDelta(partition=partition, next_offset=to), [], owned)

    def take(self, parts: Partitions) -> list[Work]:
        """All held work, emptied; a partition claimed again meanwhile (Redis lost writes) is
        read again from its stored offset, so what was fetched before that is dropped."""
        work, self._held = list(self._held.values()), {}
        self._next = time.monotonic() + self._interval
        return [w for w in work if parts.current(w.delta.partition, w.owned)]
