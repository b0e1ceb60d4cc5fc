"""Ingest's side of held events partitions, bound for one run to the source and the claims.

:class:`~controller.daemon.ingest.log_gaps.LogGaps` finds and records the gaps; this
pauses and holds the partitions they concern (:class:`~.partitions.Partitions`),
and resumes each where the operator's choice says once it is made.
"""

from __future__ import annotations

import time

from controller.daemon.ingest.flushing import Retry
from controller.daemon.ingest.log_gaps import POLL_SECONDS, Checked, LogGaps, uncounted_gap
from controller.daemon.ingest.partitions import Owned, Partitions
from controller.ports import Claim, EventSource, Record


class Holding:
    """Holds the partitions whose log lost what was counted, and resumes them when decided."""

    def __init__(
        self,
        gaps: LogGaps,
        parts: Partitions,
        source: EventSource,
        retry: Retry,
        start_from: str = "earliest",
    ) -> None:
        """``start_from``: where a partition never counted is read from (``ingest.start_from``;
        from ``latest``, the records before are skipped on purpose)."""
        self._gaps, self._parts, self._source, self._retry = gaps, parts, source, retry
        self._from_earliest = start_from == "earliest"
        self._polled = time.monotonic()

    async def at_claim(self, claim: Claim) -> Checked:
        """Whether the partition just claimed must be held instead of read, and the log it
        is read on."""
        checked = await self._retry(
            lambda: self._gaps.at_claim(claim.partition, claim.offset, self._source, log=claim.log),
            f"check the log of p{claim.partition}",
        )
        return checked or Checked(held=False, live=None)

    async def watch(self) -> None:
        """Hold the owned partitions whose log now ends before their stored offset, or is
        another log."""
        positions = self._parts.positions()
        logs = {p: owned.log for p, owned in self._parts.owned.items()}
        found = await self._retry(
            lambda: self._gaps.while_owned(positions, self._source, logs), "check the log"
        )
        for partition in found or []:
            self._hold(partition, "the log no longer holds the stored offset")

    async def at_fetch(self, partition: int, owned: Owned, first: Record) -> bool:
        """Whether a fetch that served ``first`` shows that ``partition`` must be held
        (held if so): the client reset its position to records before or past what was
        counted, or, never counted, past where its log started when the topic was first
        read."""
        if self.reset_behind(owned, first):
            await self.behind(partition, owned, first.offset)
            return True
        if owned.offset is None:
            return self._from_earliest and await self.uncounted(partition, first.offset)
        return self.past(owned, first) and await self.cut(partition, owned)

    async def at_skip(self, partition: int, owned: Owned, to: int) -> bool:
        """Whether the consumer's move of ``partition`` to ``to``, past what was read with no
        record served, shows that it must be held (held if so), as a record served at ``to``
        would: offsets the log skips (transaction markers, aborted records), or the client's
        reset past records retention deleted, or, never counted, past where its log started."""
        if owned.offset is None:
            return self._from_earliest and await self.uncounted(partition, to)
        return await self.cut(partition, owned)

    async def uncounted(self, partition: int, first: int) -> bool:
        """Hold ``partition``, never counted, if its log lost records before they were
        first counted; whether held."""
        check = f"check where the log of p{partition} starts"
        gaps, source = self._gaps, self._source
        gap = await self._retry(lambda: uncounted_gap(gaps.store, partition, first, source), check)
        if gap is None:
            return False
        await self._retry(lambda: gaps.found(gap), f"hold p{partition}")
        self._hold(partition, "the log lost records before they were first counted")
        return True

    @staticmethod
    def reset_behind(owned: Owned, first: Record) -> bool:
        """Whether a fetch served ``first`` before the stored offset: the consumer's
        position was reset (out of range), so these offsets name records not counted."""
        return owned.offset is not None and first.offset < owned.offset

    @staticmethod
    def past(owned: Owned, first: Record) -> bool:
        """Whether a fetch served ``first`` past the stored offset: offsets the log skips
        (transaction markers, compaction), or a reset past records retention deleted."""
        return owned.offset is not None and first.offset > owned.offset

    async def cut(self, partition: int, owned: Owned) -> bool:
        """Hold ``partition`` if its log now starts after its stored offset; whether held."""
        stored = owned.offset
        assert stored is not None
        check = f"check the log of p{partition}"
        held = await self._retry(lambda: self._gaps.cut(partition, stored, self._source), check)
        if held:
            self._hold(partition, "the log starts after the stored offset")
        return bool(held)

    async def behind(self, partition: int, owned: Owned, first: int) -> None:
        """Hold ``partition``: a fetch served it from ``first``, before its stored offset."""
        stored = owned.offset
        assert stored is not None
        self._hold(partition, "the broker served records before the stored offset")
        await self._retry(
            lambda: self._gaps.behind(partition, stored, first, self._source),
            f"hold p{partition}",
        )

    def _hold(self, partition: int, why: str) -> None:
        self._source.pause([partition])
        self._parts.hold(partition, why)

    async def poll(self) -> None:
        """Now and then, resume the held partitions an operator decided on."""
        now = time.monotonic()
        if not (self._parts.held or self._gaps.gaps) or now - self._polled < POLL_SECONDS:
            return
        self._polled = now
        epochs = {p: o.epoch for p, o in self._parts.held.items()}
        decided = await self._retry(
            lambda: self._gaps.decided(self._source, epochs), "operator choices"
        )
        self._gaps.remind()
        for partition, resumed in (decided or {}).items():
            if resumed is None:
                self._parts.dropped(partition)
                continue
            self._parts.release(partition, resumed.offset, resumed.log)
            await self._source.seek(partition, resumed.offset)
            self._source.resume([partition])
