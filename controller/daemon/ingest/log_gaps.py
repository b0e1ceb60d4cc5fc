"""Ingest's guard against a broker that came back without its data.

A partition's stored offset is compared with the broker's log every commit
interval once it was fetched (the log end: the larger of the broker's end
offset answer and the last fetch's high watermark), and whenever a fetch
returns records behind it (the consumer's position was reset after an
out-of-range fetch); its topic's partition count when it is claimed. A
partition whose log ends before the stored offset, or whose topic has fewer
partitions than recorded, is *held*: paused, recorded in
Redis, named by ``/readyz`` and by a critical alert, until an operator's signed
``ingest`` command chooses how it resumes (:mod:`controller.core.machine.log_gaps`).
The owner polls Redis for that choice, since the command may reach any
instance, and resumes the partition where the choice says, the stored offset
set there atomically with the owner's fencing epoch. While a partition stays
held its alert is raised again every ``repeat_every`` seconds
(``ingest.held_alert_repeat_seconds``): an operator who missed the first, or a
first that went out while the broker was being rebuilt, still hears of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from controller.core.machine import LogGap, advice, gap_of, resume_offset
from controller.core.rollouts import RaiseAlert
from controller.ports import EventSource, HeldPartitions

log = structlog.get_logger("controller.daemon.ingest.ingest")
POLL_SECONDS = 0.5
"""How often the owner of held partitions asks Redis for the operator's choice."""
REPEAT_SECONDS = 900.0
"""How often a held partition's alert is raised again, unless the settings say otherwise."""


class LogGaps:
    """The held events partitions of this instance, and how each was found."""

    def __init__(
        self,
        *,
        store: HeldPartitions,
        topic: str,
        alarm: Callable[[RaiseAlert], None] | None = None,
        beside: bool = False,
        repeat_every: float = REPEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``beside``: the topic is read beside the events topic (the Collector's), so an
        operator's command names it (``--topic``)."""
        self._store, self._topic, self._alarm = store, topic, alarm
        self._beside = beside
        self._repeat_every, self._clock = repeat_every, clock
        self.gaps: dict[int, LogGap] = {}
        self._alerted: dict[int, float] = {}
        """When each held partition's alert was last raised."""

    async def at_claim(self, partition: int, stored: int | None, source: EventSource) -> bool:
        """Whether ``partition``, just claimed at ``stored``, must be held (recorded if so):
        its topic has fewer partitions than recorded, or its log starts after ``stored``
        (the client would reset to the log start and skip what was deleted uncounted).

        Its end is checked once fetched: a broker's end offset answer may trail what
        its fetches serve (it names the last batch's start on some brokers), while a
        fetch beyond the log end is reset and serves records before the stored offset.
        """
        count = source.partition_count()
        recorded = await self._store.recorded_partitions()
        if count is not None and (recorded is None or count > recorded):
            await self._store.record_partitions(count)  # grown by an operator: the new normal
        shrank = count is not None and recorded is not None and count < recorded
        if not shrank and stored is None:
            return False
        beginning, end = (await source.log_range([partition])).get(partition, (0, 0))
        gap = LogGap(partition, stored, beginning, end, count, recorded)
        if not (gap.shrank or gap.cut):
            return False
        await self._found(gap)
        return True

    async def while_owned(self, positions: dict[int, int], source: EventSource) -> list[int]:
        """The owned partitions (at their stored ``positions``) whose log now ends before
        them: the broker lost data while they were read. Each is recorded.

        The end is the larger of the broker's answer and the high watermark of the last
        fetch (an end offset answer may trail what fetches already served), so a
        partition not fetched since its claim waits for its first fetch.
        """
        fetched = {p: hw for p in positions if (hw := source.highwater(p)) is not None}
        ranges = await source.log_range(sorted(fetched)) if fetched else {}
        found = []
        for partition, (beginning, answered) in sorted(ranges.items()):
            stored, end = positions[partition], max(answered, fetched[partition])
            gap = gap_of(
                partition,
                stored=stored,
                beginning=beginning,
                end=end,
                partitions=None,
                recorded_partitions=None,
            )
            if gap is not None:
                await self._found(gap)
                found.append(partition)
        return found

    async def cut(self, partition: int, stored: int, source: EventSource) -> bool:
        """Whether ``partition``'s log now starts after ``stored`` (recorded if so): a fetch
        served records past it, which a reset to the log start does after retention."""
        beginning, end = (await source.log_range([partition])).get(partition, (stored, stored))
        gap = LogGap(partition, stored, beginning, end)
        if not gap.cut:
            return False  # offsets skipped on the log itself: transaction markers, compaction
        await self._found(gap)
        return True

    async def behind(self, partition: int, stored: int, first: int, source: EventSource) -> None:
        """A fetch returned ``partition`` from ``first``, before its ``stored`` offset: the
        consumer's position was reset, so the log no longer holds what was counted."""
        beginning, end = (await source.log_range([partition])).get(partition, (first, first))
        await self._found(LogGap(partition, stored, beginning, end, fetched_from=first))

    async def _found(self, gap: LogGap) -> None:
        first = gap.partition not in self.gaps
        self.gaps[gap.partition] = gap
        await self._store.record(gap)
        if first:
            log.error("events_partition_held", partition=gap.partition, why=gap.why)
            self._raise(gap)

    def _raise(self, gap: LogGap) -> None:
        self._alerted[gap.partition] = self._clock()
        if self._alarm is not None:
            self._alarm(gap.alert(self._topic, beside=self._beside))

    def remind(self) -> list[int]:
        """Raise again the alert of each partition held for ``repeat_every`` since its last;
        which ones."""
        due = self._clock() - self._repeat_every
        again = [p for p, gap in sorted(self.gaps.items()) if self._alerted.get(p, due) <= due]
        for partition in again:
            log.error("events_partition_still_held", partition=partition)
            self._raise(self.gaps[partition])
        return again

    def forget(self, partitions: list[int]) -> None:
        """Revoked: the new owner finds the gaps again."""
        for partition in partitions:
            self.gaps.pop(partition, None)
            self._alerted.pop(partition, None)

    async def decided(self, source: EventSource, epochs: dict[int, int]) -> dict[int, int | None]:
        """The held partitions the operator decided on: where each resumes, or None when
        another owner claimed it meanwhile. ``epochs`` are this instance's claims on them."""
        out: dict[int, int | None] = {}
        for partition, gap in sorted(self.gaps.items()):
            if partition not in epochs:
                continue
            chosen = await self._store.choice(partition)
            ranges = await source.log_range([partition]) if chosen else {}
            if chosen is None or partition not in ranges:
                continue
            choice, gap_end = chosen
            beginning, end = ranges[partition]
            offset = resume_offset(choice, gap_end=gap_end, beginning=beginning, end=end)
            epoch = epochs[partition]
            resumed = await self._store.resume(partition, epoch=epoch, offset=offset)
            out[partition] = offset if resumed else None
            del self.gaps[partition]
            self._alerted.pop(partition, None)
            count = source.partition_count()
            if count is not None and gap.shrank:
                await self._store.record_partitions(count)
            log.warning(
                "events_partition_resumed",
                partition=partition,
                choice=choice,
                offset=offset if resumed else None,
                was=gap.why,
            )
        return out

    def reason(self) -> str | None:
        """What ``/readyz`` says while partitions are held, or None."""
        if not self.gaps:
            return None
        held = sorted(self.gaps.items())
        each = "; ".join(f"p{p}: {g.why}" for p, g in held)
        which, flag = (f"{self._topic} ", f" --topic {self._topic}") if self._beside else ("", "")
        advised = advice([g for _, g in held], named=flag)
        return (
            f"{which}events partitions {sorted(self.gaps)} held until an operator chooses:"
            f" {advised}. {each}"
        )
