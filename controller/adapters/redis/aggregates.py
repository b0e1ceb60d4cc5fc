"""The aggregate store on Redis: exactly-once flushes, fencing, reads.

Keys (``P`` is the key prefix, ``T`` the events topic, ``n`` a partition)::

    {P:T:n}:meta                  hash: epoch, offset (next to read), its log's topic_id, partitions
    {P:T:n}:rejects               hash: reject reason -> count
    {P:T:n}:flags                 set: flags that received events
    {P:T:n}:dirty                 set: flags with events the engine has not gated yet
    {P:T:n}:a:<flag>:<ver>:<arm>  hash: counters, float sums, histogram h<i>
    {P:T:n}:u:<flag>:<ver>:<arm>  HyperLogLog of unit ids
    {P:T:n}:n:<flag>:<ver>:<arm>  string: the unit buckets' counts, low words (.layout)
    {P:T:n}:h:<flag>:<ver>:<arm>  string: their high words, once a low word wraps (:b: before)
    {P:T:n}:w:<flag>:<ver>:<arm>  set: watched units seen in that arm, as integers (WATCH_CAP)
    {P:T:n}:cn:<flag>             set: the conversion names the flag's hashes count by name
    {P:T:n}:ids                   list: one entry per batch, the event ids it counted
    {P:T:-1}:ids                  sorted set: event ids other source topics counted -> when (ms)
    {P:T:-1}:src:S:m:meta         hash: the same, of partition m of another source topic S
    P:partitions:T                set: partitions ever claimed

Another source topic (the OpenTelemetry Collector's) is ingested by a store
made with ``source=S``: each of its partitions ``m`` keeps its own fence and
offset in its own meta hash, and all of them add to the aggregates of the events
topic's partition ``-1`` (:data:`~.keys.SOURCES_PARTITION`), which no Kafka
partition number can take. A gate reads it as one more partition. Such a source
is not keyed by unit, so one slot for all its partitions keeps what the events
topic gets from keying: a unit is one member of one HyperLogLog per arm, and an
event id seen on any of its partitions (a Collector that re-delivers a batch to
another partition) is in the one id window its flushes check.

Every key of one partition shares the hash tag ``{P:T:n}``, so a flush
touches one slot and runs on Redis Cluster. A flush is one Lua script that
checks the fencing epoch, compares the stored offset, applies every increment
and records the next offset, so a replayed batch is a no-op and a stale owner
cannot write. Aggregates expire ``aggregate_ttl_seconds`` after their last
write; the meta hash does not expire, because it is what makes replays safe.
Unique units are summed across partitions, which is exact up to HyperLogLog
error because events are keyed by unit id, so each unit lives on one partition.
For the same reason units seen in both arms are found within a partition: the
flush adds the batch's watched units (one in four, drawn by hash) to their arm's
set, until either arm's set of the version is full, and counts in the arm's hash
those new to it (``wu``) and, of these, those the other arm's set already holds
(``both``); a read sums them (:mod:`controller.core.stats.aggregates`).

A named conversion is counted in its cell's hash under fields suffixed by its
name (``conv:checkout_completed``, ...) once the flag's set of names holds the
name: the flush adds a new name while the set holds fewer than
``MAX_CONVERSION_NAMES``, and counts a conversion of a name past them under
``~other``. One partition's names are one set, so both arms of a version, and
every version, keep the same names; the set expires with the flag's newest hash.

An event is counted once per id within a window: a flush is refused, before
any write, when its batch holds an id the partition recorded less than
``dedupe_seconds`` ago (and among its newest ``dedupe_max_ids``), naming
those ids (:class:`DuplicateEvents`). A copy of an event is produced keyed by
its unit, as the first was, so one partition's ids are enough. An events
partition's owner holds them in memory (:mod:`.id_log`); the partition the
source topics share is written by the owners of all their partitions, so
there the script checks each id in a sorted set.

An events partition's owner likewise holds a copy of each cell it flushed, its
strings of lanes and its hash's counts, and writes their new values where the
script added to them one by one; the cell's hash counts those writes in ``lv``
(:mod:`.cells.copies`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster

from controller.adapters.redis.aggregate_reads import ARMS, AggregateReads, Cells
from controller.adapters.redis.cells.copies import (
    COPY_BUDGET,
    CellLanes,
    CopyKey,
    LaneCopies,
    cell_argument,
    cell_lanes,
)
from controller.adapters.redis.cells.layout import (
    SOURCES_PARTITION,
    partition_tag,
    partitions_key,
    source_meta_key,
)
from controller.adapters.redis.cells.unit_counts import flush_script
from controller.adapters.redis.client import (
    RedisClient,
    as_text,
    connect,
    flush_conflict,
    translated,
)
from controller.adapters.redis.id_log import CONVERT_SORTED_SET, IdLog, IdWindow, entry, read_log
from controller.core.common import DuplicateEvents, FlushRefused
from controller.core.machine import LogIdentity
from controller.core.stats import (
    MAX_CONVERSION_NAMES,
    WATCH_CAP,
    FlagAggregates,
    PartitionDelta,
)
from controller.core.wire import Arm
from controller.ports import Claim, FlushOutcome
from controller.settings import RedisSettings

__all__ = ["IdWindow", "RedisAggregateStore", "connect", "translated"]

_CLAIM = """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return {epoch, unpack(redis.call('HMGET', KEYS[1], 'offset', 'topic_id', 'partitions', 'rejoin'))}
"""

_FLUSH = flush_script()
_msgpack = msgspec.msgpack.Encoder()


class RedisAggregateStore:
    """Aggregates and partition offsets of one events topic, in Redis.

    With ``source``, the partitions claimed and flushed are those of that other
    topic, whose aggregates the events topic ``topic`` holds in its partition
    :data:`~.keys.SOURCES_PARTITION` (see the module's key layout). ``copy_budget``
    bounds the bytes of the owner's copies of its cells (:mod:`.cells.copies`).
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        settings: RedisSettings,
        topic: str,
        dedupe: IdWindow | None = None,
        clock: Callable[[], float] = time.time,
        source: str | None = None,
        copy_budget: int = COPY_BUDGET,
    ) -> None:
        self._redis = client
        self._dedupe, self._clock = dedupe or IdWindow(), clock
        self._prefix = settings.key_prefix
        self._topic = topic
        self._source = source
        self._ttl, self._most_units = settings.aggregate_ttl_seconds, settings.max_units_per_cell
        self._claim = client.register_script(_CLAIM)
        self._convert_ids = client.register_script(CONVERT_SORTED_SET)
        self._logs: dict[int, IdLog] = {}
        """The ids each events partition counted within the window, as its list holds them."""
        self._flush = client.register_script(_FLUSH)
        # A partition of another source is written by the owners of all its partitions.
        self._copies = LaneCopies(copy_budget) if source is None else None
        self._reads = AggregateReads(
            client, prefix=self._prefix, topic=topic, cluster=isinstance(client, RedisCluster)
        )

    def _tag(self, partition: int) -> str:
        return partition_tag(self._prefix, self._topic, partition)

    def _meta(self, partition: int) -> str:
        """The meta hash of ``partition`` of the topic this store claims and flushes."""
        if self._source is None:
            return f"{self._tag(partition)}:meta"
        return source_meta_key(self._prefix, self._topic, self._source, partition)

    def _member(self, partition: int) -> int:
        """The events topic's partition that ``partition``'s flushes write to."""
        return partition if self._source is None else SOURCES_PARTITION

    @property
    def _partitions_key(self) -> str:
        return partitions_key(self._prefix, self._topic)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers."""
        async with translated():
            await self._redis.ping()

    async def claim(self, partition: int) -> Claim:
        """Take ownership of ``partition``: bump its epoch, return the stored offset, the
        identity of the log it was counted on and, for an OTLP topic, its rejoin offset."""
        self._forget(partition)
        async with translated():
            await self._redis.sadd(self._partitions_key, self._member(partition))
            epoch, offset, topic_id, count, rejoin = await self._claim(keys=[self._meta(partition)])
            if self._source is None:
                # Read after the new epoch is stored: no other owner can add to it now.
                self._logs[partition] = await self._load_ids(partition)
        stored = None if offset is None or int(offset) < 0 else int(offset)
        kept = LogIdentity.stored(topic_id, count)
        return Claim(partition, int(epoch), stored, kept, _rejoin(rejoin, stored))

    async def _load_ids(self, partition: int) -> IdLog:
        keys = [self._meta(partition), self._ids_key(partition)]
        return await read_log(self._redis, self._convert_ids, keys, self._dedupe)

    def _ids_key(self, partition: int) -> str:
        return f"{self._tag(self._member(partition))}:ids"

    async def flush(
        self,
        delta: PartitionDelta,
        *,
        epoch: int,
        expected_offset: int | None,
        log: LogIdentity | None = None,
    ) -> FlushOutcome:
        """Apply ``delta`` and advance the partition's offset, atomically, once; with it,
        ``log``, the identity of the log ``delta`` was read from (unknown parts kept).

        Raises :class:`FencedError` when another owner holds the partition (a
        newer epoch, or a stored offset ahead of this owner's), :class:`LostWrites`
        when the stored epoch or offset is behind this owner's (Redis lost writes
        it acknowledged), and :class:`FlushRefused` when Redis would refuse part
        of the batch, and :class:`DuplicateEvents` when the batch holds events
        counted within the id window; in every one of these cases nothing was written.
        """
        now_ms = int(self._clock() * 1000)
        ids = delta.seen.recorded()
        ids_log = await self._checked_ids(delta.partition, ids, now_ms)
        listed = ["log", entry(now_ms, ids) if ids else b""] if ids_log is not None else None
        tail = [*(listed or ("zset", b"")), *(log or LogIdentity(None, None)).fields().values()]
        tail.append(b"" if delta.rejoin is None else delta.rejoin)
        for _ in range(2):  # again by BITFIELD where a copy is not of what Redis holds (-6)
            keys, args, lanes = self._flush_arguments(delta, epoch, expected_offset, now_ms, tail)
            try:
                async with translated():
                    code, detail, *learned = await self._flush(keys=keys, args=args)
            except BaseException:
                # Applied or not, unknown: the list is read again before the next flush.
                self._forget(delta.partition)
                raise
            code = int(code)
            if code != -6 or self._copies is None:
                break
            self._copies.forget(delta.partition)
        if code == 1:
            if ids_log is not None:
                ids_log.add(now_ms, ids)
            if self._copies is not None:
                self._copies.applied(lanes, learned[0] if learned else [])
            return FlushOutcome.APPLIED
        self._forget(delta.partition)
        if code == 0:
            return FlushOutcome.REPLAYED
        if code == -5:
            named = frozenset(as_text(i) for i in detail)
            raise DuplicateEvents(
                f"partition {delta.partition}: {len(named)} events counted before", ids=named
            )
        if code in (-3, -4, -6):
            raise FlushRefused(
                f"partition {delta.partition}: flush refused, nothing written: {as_text(detail)}",
                per_cell=code == -3,
            )
        raise flush_conflict(delta.partition, code, as_text(detail), epoch, expected_offset)

    async def _checked_ids(self, partition: int, ids: list[str], now_ms: int) -> IdLog | None:
        """The events partition's ids in memory (read if not yet), having raised
        :class:`DuplicateEvents` if ``ids`` holds one of them; None for a source's store."""
        if self._source is not None:
            return None
        log = self._logs.get(partition)
        if log is None:
            async with translated():
                log = self._logs[partition] = await self._load_ids(partition)
        counted = log.counted(ids, now_ms)
        if counted:
            raise DuplicateEvents(
                f"partition {partition}: {len(counted)} events counted before", ids=counted
            )
        return log

    def _forget(self, partition: int) -> None:
        """Let the partition's ids and copies go: read again before its next flush."""
        self._logs.pop(partition, None)
        if self._copies is not None:
            self._copies.forget(partition)

    def _flush_arguments(
        self, delta: PartitionDelta, epoch: int, expected: int | None, now_ms: int, tail: list[Any]
    ) -> tuple[list[str], list[Any], dict[CopyKey, CellLanes]]:
        """The script's keys and arguments (``tail`` after the first ten, then the units a
        cell counts, then the copies' bytes), and how each cell's lanes are written."""
        tag = self._tag(self._member(delta.partition))
        keys = [
            self._meta(delta.partition),
            f"{tag}:rejects",
            f"{tag}:flags",
            f"{tag}:dirty",
            f"{tag}:ids",
            f"{tag}:scratch",
        ]
        cells, lanes, raw = [], {}, list[bytes]()
        for (flag, version, arm), cell in delta.cells.items():
            other = Arm.CONTROL if arm == Arm.TREATMENT else Arm.TREATMENT
            keys += [
                f"{tag}:a:{flag}:{version}:{arm}",
                f"{tag}:u:{flag}:{version}:{arm}",
                f"{tag}:w:{flag}:{version}:{arm}",
                f"{tag}:w:{flag}:{version}:{other}",
                f"{tag}:cn:{flag}",
                *(f"{tag}:{kind}:{flag}:{version}:{arm}" for kind in "nhb"),
                *(f"{tag}:{kind}:{flag}:{version}:{arm}" for kind in "kt"),
                f"{tag}:f:{flag}",
            ]
            # From the owner's copy of the cell, or by increments (.cells.copies).
            key = (delta.partition, flag, version, arm)
            lanes[key] = written = cell_lanes(self._copies, key, cell)
            cells.append(cell_argument(flag, cell, written, raw))
        # One msgpack argument instead of thousands: packing arguments one by one
        # was a fifth of ingest's CPU time.
        # An events partition's ids travel as one list entry, after these (see flush).
        ids = delta.seen.recorded() if self._source is not None else []
        payload = _msgpack.encode((dict(delta.rejects), cells, ids))
        window = self._dedupe
        args = [
            *(epoch, -1 if expected is None else expected, delta.next_offset, self._ttl, payload),
            *(WATCH_CAP, now_ms, window.seconds * 1000, window.max_ids, MAX_CONVERSION_NAMES),
        ]
        return keys, [*args, *tail, self._most_units, *raw], lanes

    async def partitions(self) -> list[int]:
        """Every partition of the topic that has ever been claimed."""
        async with translated():
            members = await self._redis.smembers(self._partitions_key)
        found = sorted(int(m) for m in members)
        self._reads.learn(found)
        return found

    async def offset(self, partition: int) -> int | None:
        """The next offset to read on ``partition``, or None if it was never flushed."""
        async with translated():
            value = await self._redis.hget(self._meta(partition), "offset")
        return None if value is None else int(value)

    async def pop_dirty(self, limit: int = 10_000) -> set[str]:
        """Flags that received events since the last call (on any partition)."""
        parts = await self.partitions()
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for p in parts:
                pipe.spop(f"{self._tag(p)}:dirty", limit)
            results = await pipe.execute()
        return {as_text(m) for members in results for m in (members or [])}

    async def mark_dirty(self, flags: set[str]) -> None:
        """Put flags back as having news (into the first partition's set; reads pop all)."""
        parts = await self.partitions()
        if flags and parts:
            async with translated():
                await self._redis.sadd(f"{self._tag(parts[0])}:dirty", *flags)

    async def rejects(self) -> dict[str, int]:
        """Reject counts by reason, summed over partitions."""
        parts = await self.partitions()
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for p in parts:
                pipe.hgetall(f"{self._tag(p)}:rejects")
            results = await pipe.execute()
        totals: dict[str, int] = {}
        for row in results:
            for reason, count in row.items():
                totals[as_text(reason)] = totals.get(as_text(reason), 0) + int(count)
        return totals

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates:
        """Both arms of ``flag`` summed over ``versions`` and every partition.

        The unit count of one partition and arm is one ``PFCOUNT`` over the
        HyperLogLogs of every version (a union: a unit seen under two versions
        counts once). On one node the read is one script call, one round trip;
        on a cluster, one per partition, side by side (:mod:`.aggregate_reads`).
        """
        async with translated():
            (data,) = await self._reads.read([(flag, tuple(sorted(set(versions))))])
        return data

    async def read_many(
        self, wanted: Sequence[tuple[str, Iterable[int]]], cells: Cells = ARMS
    ) -> list[FlagAggregates]:
        """:meth:`read` of each ``(flag, versions)``, together: one round trip on one node, on a
        cluster one call per partition for them all (``cells``: :meth:`.AggregateReads.read`)."""
        reads = [(flag, tuple(sorted(set(versions)))) for flag, versions in wanted]
        async with translated():
            return await self._reads.read(reads, cells)


def _rejoin(stored: bytes | None, offset: int | None) -> int | None:
    """The stored rejoin offset, where it is below the counted ``offset`` (else None)."""
    try:
        rejoin = None if stored is None else int(stored)
    except ValueError:
        return None
    if rejoin is None or offset is None or not 0 <= rejoin < offset:
        return None
    return rejoin
