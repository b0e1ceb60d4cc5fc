"""Ingest's guard against a broker that came back without its data.

A partition's stored offset is compared with the broker's log every commit
interval once it was fetched (the log end: the larger of the broker's end
offset answer and the last fetch's high watermark), and whenever a fetch
returns records behind it (the consumer's position was reset after an
out-of-range fetch); the identity of the log it was counted on (the topic's id
and partition count, stored with it) with the broker's when it is claimed and
every commit interval (:func:`~controller.core.machine.identity_change`). A
partition whose log ends before the stored offset, or is another log (the
topic made again: another id, fewer partitions), is *held*: paused, recorded in
Redis, named by ``/readyz`` and by a critical alert, until an operator's signed
``ingest`` command chooses how it resumes (:mod:`controller.core.machine.log_gaps`).
The owner polls Redis for that choice, since the command may reach any
instance, and resumes the partition where the choice says, the stored offset
set there atomically with the owner's fencing epoch. A stored partition the
topic no longer has is held by the claim that finds the topic shrunk, and the
operator's choice retires it (read from offset 0 should the topic grow again).
While a partition stays held its alert is raised again every ``repeat_every`` seconds
(``ingest.held_alert_repeat_seconds``): an operator who missed the first, or a
first that went out while the broker was being rebuilt, still hears of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

import structlog

from controller.core.machine import (
    LogGap,
    LogIdentity,
    advice,
    gap_of,
    identity_change,
    resume_offset,
)
from controller.core.rollouts import RaiseAlert
from controller.daemon.ingest.lost_partitions import LostPartitions, live_identity
from controller.ports import EventSource, HeldPartitions

log = structlog.get_logger("controller.daemon.ingest.ingest")
POLL_SECONDS = 0.5
"""How often the owner of held partitions asks Redis for the operator's choice."""
REPEAT_SECONDS = 900.0
"""How often a held partition's alert is raised again, unless the settings say otherwise."""


class Checked(NamedTuple):
    """A claimed partition's log, checked: whether it is held, and the broker's identity of
    the topic (None where it gave none)."""

    held: bool
    live: LogIdentity | None


class Resumed(NamedTuple):
    """Where a held partition resumes, and the identity of the log it resumes on."""

    offset: int
    log: LogIdentity | None


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
        self.store, self._topic, self._alarm = store, topic, alarm
        self._beside = beside
        self._repeat_every, self._clock = repeat_every, clock
        self.gaps: dict[int, LogGap] = {}
        self._alerted: dict[int, float] = {}
        """When each held partition's alert was last raised."""
        self._lost = LostPartitions(store)

    async def at_claim(
        self,
        partition: int,
        stored: int | None,
        source: EventSource,
        *,
        log: LogIdentity | None = None,
    ) -> Checked:
        """Whether ``partition``, just claimed at ``stored`` (counted on the log ``log``), must
        be held (recorded if so): another log (another topic id, fewer partitions), or a log
        that starts after ``stored`` (a reset to the log start would skip what was deleted
        uncounted); a longer log proves nothing. Stored partitions the topic no longer has
        are held with it (:mod:`.lost_partitions`); a first claim without an offset records
        every log's start, once (:func:`uncounted_gap`). Its end is checked once fetched: an
        end offset answer may trail what fetches serve (some brokers name the last batch's
        start), while a fetch past the log end is reset to records before the stored offset.
        """
        live = await source.identity()
        count = live.partitions if live is not None else None
        count = count if count is not None else source.partition_count()
        recorded = await self.store.recorded_partitions()
        if count is not None and (recorded is None or count > recorded):
            await self.store.record_partitions(count)  # grown by an operator: the new normal
        changed = None if stored is None else identity_change(partition, stored=log, live=live)
        if count is not None:
            before = max(recorded or 0, (log.partitions or 0) if log is not None else 0)
            for lost in await self._lost.find(count, before, live, known=set(self.gaps)):
                await self.found(lost)
        shrank = count is not None and recorded is not None and count < recorded
        if not shrank and stored is None:
            if await self.store.first_start(partition) is None:
                await record_starts(self.store, source, count)  # a later one: a loss
            return Checked(held=False, live=live)
        beginning, end = (await source.log_range([partition])).get(partition, (0, 0))
        gap = LogGap(partition, stored, beginning, end, count, recorded, changed=changed)
        if not (gap.shrank or gap.cut or gap.changed):
            return Checked(held=False, live=live)
        await self.found(gap)
        return Checked(held=True, live=live)

    async def while_owned(
        self,
        positions: dict[int, int],
        source: EventSource,
        logs: Mapping[int, LogIdentity | None] | None = None,
    ) -> list[int]:
        """The owned partitions (at their stored ``positions``, counted on the logs ``logs``)
        whose log now ends before them, or is another log: the broker lost data while
        they were read, or the topic was made again. Each is recorded.

        The end is the larger of the broker's answer and the high watermark of the last
        fetch (an end offset answer may trail what fetches already served), so a
        partition not fetched since its claim waits for its first fetch.
        """
        live = await live_identity(source) if logs else None
        changed = {
            p: why
            for p in positions
            if (why := identity_change(p, stored=(logs or {}).get(p), live=live))
        }
        fetched = {p: hw for p in positions if (hw := source.highwater(p)) is not None}
        asked = sorted({*fetched, *changed})
        ranges = await source.log_range(asked) if asked else {}
        found = []
        for partition in sorted({*ranges, *changed}):
            stored = positions[partition]
            beginning, answered = ranges.get(partition, (stored, stored))
            gap = gap_of(
                partition,
                stored=stored,
                beginning=beginning,
                end=max(answered, fetched.get(partition, answered)),
                partitions=None,
                recorded_partitions=None,
                changed=changed.get(partition),
            )
            if gap is not None:
                await self.found(gap)
                found.append(partition)
        return found

    async def cut(self, partition: int, stored: int, source: EventSource) -> bool:
        """Whether ``partition``'s log now starts after ``stored`` (recorded if so): a fetch
        served records past it, which a reset to the log start does after retention."""
        beginning, end = (await source.log_range([partition])).get(partition, (stored, stored))
        gap = LogGap(partition, stored, beginning, end)
        if not gap.cut:
            return False  # offsets skipped on the log itself: transaction markers, compaction
        await self.found(gap)
        return True

    async def behind(self, partition: int, stored: int, first: int, source: EventSource) -> None:
        """A fetch returned ``partition`` from ``first``, before its ``stored`` offset: the
        consumer's position was reset, so the log no longer holds what was counted."""
        beginning, end = (await source.log_range([partition])).get(partition, (first, first))
        await self.found(LogGap(partition, stored, beginning, end, fetched_from=first))

    async def found(self, gap: LogGap) -> None:
        """Hold ``gap``'s partition: recorded, logged and alerted the first time."""
        first = gap.partition not in self.gaps
        self.gaps[gap.partition] = gap
        await self.store.record(gap)
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
            self._lost.forget(partition)

    async def decided(
        self, source: EventSource, epochs: dict[int, int]
    ) -> dict[int, Resumed | None]:
        """The held partitions the operator decided on: where each resumes and on which log,
        or None when another owner claimed it meanwhile. ``epochs`` are this instance's
        claims on them. Held partitions the topic no longer has are retired."""
        out: dict[int, Resumed | None] = {}
        live: LogIdentity | None = None
        for partition, gap in sorted(self.gaps.items()):
            if partition in self._lost:
                if await self._lost.retire(partition, gap):
                    self._forget(partition)
                continue
            if partition not in epochs:
                continue
            chosen = await self.store.choice(partition)
            ranges = await source.log_range([partition]) if chosen else {}
            if chosen is None or partition not in ranges:
                continue
            live = live or await live_identity(source)
            choice, gap_end = chosen
            beginning, end = ranges[partition]
            offset = resume_offset(choice, gap_end=gap_end, beginning=beginning, end=end)
            epoch = epochs[partition]
            resumed = await self.store.resume(partition, epoch=epoch, offset=offset, log=live)
            out[partition] = Resumed(offset, live) if resumed else None
            self._forget(partition)
            count = source.partition_count()
            if count is not None and gap.shrank:
                await self.store.record_partitions(count)
            log.warning(
                "events_partition_resumed",
                partition=partition,
                choice=choice,
                offset=offset if resumed else None,
                was=gap.why,
            )
        return out

    def _forget(self, partition: int) -> None:
        del self.gaps[partition]
        self._alerted.pop(partition, None)
        self._lost.forget(partition)

    def reason(self) -> str | None:
        """What ``/readyz`` says while partitions are held, or None."""
        return _reason(self.gaps, self._topic, beside=self._beside) if self.gaps else None


def _reason(gaps: Mapping[int, LogGap], topic: str, *, beside: bool) -> str:
    held = sorted(gaps.items())
    each = "; ".join(f"p{p}: {g.why}" for p, g in held)
    which, flag = (f"{topic} ", f" --topic {topic}") if beside else ("", "")
    advised = advice([g for _, g in held], named=flag)
    return (
        f"{which}events partitions {sorted(gaps)} held until an operator chooses: {advised}. {each}"
    )


async def record_starts(store: HeldPartitions, source: EventSource, count: int | None) -> None:
    """Where each partition's log starts now, kept where one was recorded before."""
    if count is not None:
        ranges = await source.log_range(list(range(count)))
        await store.record_starts({p: start for p, (start, _) in ranges.items()})


async def uncounted_gap(
    store: HeldPartitions, partition: int, first: int, source: EventSource
) -> LogGap | None:
    """The gap of ``partition``, never counted, whose first fetch served ``first``: its log
    now starts after where it started when ingest first saw the topic. A fetch that begins
    past that start asks the broker where the log starts (offsets may skip markers)."""
    started = await store.first_start(partition)
    if started is None or first <= started:
        return None
    beginning, end = (await source.log_range([partition])).get(partition, (first, first))
    gap = LogGap(partition, None, beginning, end, first_start=started)
    return gap if gap.cut_uncounted else None
