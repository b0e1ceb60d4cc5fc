"""Reading the aggregates: one script call for a gate's read, decoded once into typed arms.

A gate reads both arms of a flag's stage on every partition: each arm's hash
per flag version and one ``PFCOUNT`` of the arm's HyperLogLogs. ``read.lua``
does all of that in Redis and answers with one msgpack document, which
:class:`ArmReply` decodes straight into typed fields; the arms are then added
up into :class:`~controller.core.stats.aggregates.FlagAggregates`. Nothing
between Redis and the gate is a dict of field names: the fields are summed
in Redis, the float sums in the order they always were (partition, then
version), so a read is what it was before to the last bit. The unit buckets'
strings of lanes come back as stored and the daemon adds them (:mod:`.lanes`).

On one node, one call covers every partition and checks, in the same call,
that the partitions whose keys it was given are those claimed; a partition
claimed since is named in the answer, and the read is made again with its
keys. So a gate's read is one command and one round trip. On a cluster the
partitions' keys live in different slots: one call per partition, sent side
by side with ``SMEMBERS`` of the partitions set (one round trip of latency,
one per node). :meth:`AggregateReads.read` takes many reads at once:
:data:`KEYS_PER_CALL` keys to a call (so no call holds Redis long), the
calls of one node in one pipeline. :class:`HoldoutReads` adds one read of every flag's
cells together, whose units count a unit several flags saw once (one ``PFCOUNT``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from functools import reduce
from importlib import resources
from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from controller.adapters.redis.cells.lanes import LaneCell, added_lanes, in_slots
from controller.adapters.redis.cells.layout import partition_tag, partitions_key, with_layout
from controller.adapters.redis.cells.unit_counts import (
    HeaviestReply,
    heaviest_of,
    with_heaviest_kept,
)
from controller.adapters.redis.client import RedisClient, translated
from controller.core.common import BUCKET_COUNT, StoreError
from controller.core.rules import Cohort
from controller.core.stats import (
    ArmAggregate,
    Conversions,
    FlagAggregates,
    UnitBuckets,
    failures_of,
    merged_failures,
)
from controller.core.wire import Arm
from controller.settings import RedisSettings

_READ = with_heaviest_kept(
    with_layout(resources.files(__package__).joinpath("read.lua").read_text("utf-8"))
)
NO_BUCKETS = UnitBuckets.empty()
"""An events arm none of whose events were counted in a unit bucket."""
KEYS_PER_CALL = 400
"""Keys one script call reads, at most (unless one read alone has more): a call holds
Redis for as long as it runs, a few milliseconds for 400 keys."""
CLUSTER_FANOUT = 256
"""How many calls a read sends to a cluster side by side."""
ATTEMPTS = 5
"""Reads made again, at most, when the claimed partitions changed under the last one."""
Cells = tuple[tuple[str, ...], tuple[str, ...]]
"""What a read sums into its two arms: the cells of each (as many for both), by the name
the store keys them with (an arm, or a cohort counted apart)."""
ARMS: Cells = ((Arm.TREATMENT.value,), (Arm.CONTROL.value,))
"""A gate's read: the treatment's cell against the control's."""
NO_CELL = "-"
"""A cell name no fold writes (no arm or cohort is one): it pads the shorter side of a read."""
HOLDOUT_CELLS: Cells = (
    (Arm.TREATMENT.value, Arm.CONTROL.value, Cohort.CARRIED.value, Cohort.OUTSIDE.value),
    (Cohort.HOLDOUT.value, NO_CELL, NO_CELL, NO_CELL),
)
"""A holdout's read: everyone else (each arm, and the cohorts a ring counts apart) in the
treatment's place, the holdout in the control's."""

Wanted = tuple[str, tuple[int, ...]]
"""A flag and its versions, ascending, without repeats."""
Read = tuple[Wanted, ...]
"""What one read sums: one flag's versions (a gate's read), or several flags' (all together)."""


class NamedReply(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One named conversion of an arm as ``read.lua`` sums it (sums as stored, in order)."""

    name: str
    count: int
    values: int
    value_sums: tuple[float, ...]
    value_squares: tuple[float, ...]


class ArmReply(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One arm as ``read.lua`` sums it over the partitions and versions of one call."""

    units: int
    exposures: int
    requests: int
    errors: int
    latency_count: int
    conversions: int
    conversion_values: int
    watched: int
    both: int
    histogram: tuple[int, ...]
    latency_sums: tuple[float, ...]
    """The stored latency sums, one per partition and version that holds one, in that order."""
    value_sums: tuple[float, ...]
    value_squares: tuple[float, ...]
    named: tuple[NamedReply, ...]
    unit_sums: tuple[float, ...]
    """The unit buckets' float sums, summed, in :data:`~.layout.SUM_FIELDS`' order; empty
    when no hash holds any."""
    lanes: tuple[LaneCell, ...]
    """Each cell's string of unit bucket lanes, as stored (none for a cell without)."""
    heaviest: tuple[HeaviestReply, ...] = ()
    """Each cell's heaviest units (none for a cell that counted no request)."""
    failed: dict[str, str | int | float] | tuple[()] = ()
    """The failures' fields by fingerprint, summed (Lua's empty table: an empty array)."""


CallReply = list[tuple[ArmReply, ArmReply]]
"""Per read of one call: the treatment arm, then the control arm."""
_decoder = msgspec.msgpack.Decoder(CallReply)


class AggregateReads:
    """Reads of flags' arms for one events topic (keys as :mod:`.aggregates` names them)."""

    def __init__(self, client: RedisClient, *, prefix: str, topic: str, cluster: bool) -> None:
        self._redis, self._cluster = client, cluster
        self._prefix, self._topic = prefix, topic
        self._script = client.register_script(_READ)
        self._claimed: list[int] | None = None
        """The claimed partitions as last seen; every read checks them."""

    def _tag(self, partition: int) -> str:
        return partition_tag(self._prefix, self._topic, partition)

    @property
    def _partitions_key(self) -> str:
        return partitions_key(self._prefix, self._topic)

    def learn(self, partitions: list[int]) -> None:
        """The claimed partitions, as just read: the next read expects them."""
        self._claimed = partitions

    async def read(self, wanted: Sequence[Wanted], cells: Cells = ARMS) -> list[FlagAggregates]:
        """Both arms of each ``(flag, versions)``, summed over its versions and every partition.

        With ``cells``, each arm is the sum of its cells (the units a union over them all),
        in the treatment's place and the control's.
        """
        if not wanted:
            return []
        replies = await self._read([(w,) for w in wanted], cells)
        return [_flag(f, v, parts) for (f, v), parts in zip(wanted, replies, strict=True)]

    async def read_together(
        self, wanted: Sequence[Wanted], cells: Cells
    ) -> tuple[list[FlagAggregates], FlagAggregates]:
        """:meth:`read` of each ``(flag, versions)``, and in the same calls all of them as one
        (named by the flags joined with ``+``), its units one union over every flag's cells."""
        if not wanted:
            raise ValueError("a read together needs a flag")
        *each, together = await self._read([*((w,) for w in wanted), tuple(wanted)], cells)
        flags = [_flag(f, v, parts) for (f, v), parts in zip(wanted, each, strict=True)]
        versions = tuple(sorted({v for _, vs in wanted for v in vs}))
        return flags, _flag("+".join(f for f, _ in wanted), versions, together)

    async def _read(self, reads: Sequence[Read], cells: Cells) -> list[CallReply]:
        """Per read, its arms' reply of each partition (one on one node)."""
        if len(cells[0]) != len(cells[1]) or not cells[0]:
            raise ValueError("both arms of a read need as many cells, at least one")
        parts = self._claimed
        if parts is None:
            parts = await self._members()
        for _ in range(ATTEMPTS):
            read = self._on_cluster if self._cluster else self._on_node
            claimed, replies = await read(reads, parts, cells)
            if replies is not None:
                self._claimed = parts
                return [[reply[i] for reply in replies] for i in range(len(reads))]
            parts = claimed
        raise StoreError(f"the partitions of {self._topic} kept changing under {ATTEMPTS} reads")

    async def _members(self) -> list[int]:
        return sorted(int(m) for m in await self._redis.smembers(self._partitions_key))

    def _keys(self, tags: Iterable[str], reads: Sequence[Read], cells: Cells) -> list[str]:
        """Per read, per partition, per arm: the hashes of each flag's versions (and cells),
        the units, the lanes."""
        keys: list[str] = []
        add = keys.append
        for read in reads:
            for tag in tags:
                for arm in cells:
                    for kind in ("a", "u", "b", "n", "h", "t", "k"):
                        for flag, versions in read:
                            for v in versions:
                                for cell in arm:
                                    add(f"{tag}:{kind}:{flag}:{v}:{cell}")
        return keys

    async def _on_node(
        self, wanted: Sequence[Read], parts: list[int], cells: Cells
    ) -> tuple[list[int], list[CallReply] | None]:
        """Calls over every partition, :func:`_chunks` of the reads, each checking the partitions.

        Returns the claimed partitions and, when they are ``parts``, one reply
        (one per call: partitions are not split on one node).
        """
        tags = [self._tag(p) for p in parts]
        expected = ",".join(map(str, parts))
        calls = []
        per = len(cells[0])
        for chunk in _chunks(wanted, len(parts) * per):
            keys = [self._partitions_key, *self._keys(tags, chunk, cells)]
            counts = (sum(len(v) for _, v in read) * per for read in chunk)
            calls.append((keys, [expected, len(parts), BUCKET_COUNT, *counts]))
        answers = await self._run(calls)
        replies: list[CallReply] = []
        for answer in answers:
            if not isinstance(answer, bytes):  # the claimed partitions, not those expected
                return sorted(int(m) for m in answer), None
            replies.append(_decoded(answer))
        joined = [read for reply in replies for read in reply]
        return parts, [joined]

    async def _run(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """The script's answer to each call, one round trip (the script loaded if it was not)."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [await self._script(keys=keys, args=args)]
        for _ in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
            if not any(isinstance(a, NoScriptError) for a in answers):
                break
            await self._redis.script_load(_READ)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return list(answers)

    async def _on_cluster(
        self, wanted: Sequence[Read], parts: list[int], cells: Cells
    ) -> tuple[list[int], list[CallReply] | None]:
        """Calls per partition, :func:`_chunks` of the reads, beside ``SMEMBERS``.

        Returns the claimed partitions and, when they are ``parts``, one reply
        per partition, in partition order.
        """
        calls: list[tuple[int, list[str], list[Any]]] = []
        per = len(cells[0])
        for index, p in enumerate(parts):
            for chunk in _chunks(wanted, per):
                args = ["-", 1, BUCKET_COUNT, *(sum(len(v) for _, v in r) * per for r in chunk)]
                calls.append((index, self._keys([self._tag(p)], chunk, cells), args))
        # SMEMBERS goes with the first calls: a partition claimed since is seen in the same trip.
        claimed = self._members()
        replies: list[CallReply] = [[] for _ in parts]
        for start in range(0, max(len(calls), 1), CLUSTER_FANOUT):
            batch = calls[start : start + CLUSTER_FANOUT]
            sent = [self._script(keys=keys, args=args) for _, keys, args in batch]
            if start == 0:
                claimed_now, *answers = await asyncio.gather(claimed, *sent)
            else:
                answers = await asyncio.gather(*sent)
            for (index, _, _), answer in zip(batch, answers, strict=True):
                replies[index] += _decoded(answer)
        if claimed_now != parts:
            return claimed_now, None
        return parts, replies


def _chunks(wanted: Sequence[Read], parts: int) -> list[Sequence[Read]]:
    """``wanted`` cut into runs of at most :data:`KEYS_PER_CALL` keys over ``parts`` partitions
    (a read with more is a run of its own)."""
    runs: list[Sequence[Read]] = []
    start, keys = 0, 0
    for index, read in enumerate(wanted):
        # two arms, a hash, HyperLogLog and three strings of lanes each
        more = 10 * parts * sum(len(versions) for _, versions in read)
        if keys + more > KEYS_PER_CALL and index > start:
            runs.append(wanted[start:index])
            start, keys = index, 0
        keys += more
    runs.append(wanted[start:])
    return runs


def _decoded(answer: bytes) -> CallReply:
    try:
        return _decoder.decode(answer)
    except msgspec.DecodeError as exc:
        raise StoreError(f"an aggregate read answered what it should not: {exc}") from exc


def _flag(
    flag: str, versions: tuple[int, ...], parts: list[tuple[ArmReply, ArmReply]]
) -> FlagAggregates:
    """The flag's two arms, added up over the replies of its partitions, in order."""
    return FlagAggregates(
        flag=flag,
        versions=frozenset(versions),
        treatment=_arm([t for t, _ in parts]),
        control=_arm([c for _, c in parts]),
        watched=sum(t.watched + c.watched for t, c in parts),
        both_arms=sum(t.both + c.both for t, c in parts),
    )


def _arm(parts: list[ArmReply]) -> ArmAggregate:
    """One arm over the replies of its partitions (one on one node; none: nothing counted)."""
    if not parts:
        return ArmAggregate(buckets=NO_BUCKETS)
    return ArmAggregate(
        exposures=sum(p.exposures for p in parts),
        units=sum(p.units for p in parts),
        requests=sum(p.requests for p in parts),
        errors=sum(p.errors for p in parts),
        latency_count=sum(p.latency_count for p in parts),
        latency_sum_ms=_added(p.latency_sums for p in parts),
        latency_histogram=tuple(sum(c) for c in zip(*(p.histogram for p in parts), strict=True)),
        conversions=sum(p.conversions for p in parts),
        conversion_values=sum(p.conversion_values for p in parts),
        conversion_value_sum=_added(p.value_sums for p in parts),
        conversion_value_sq=_added(p.value_squares for p in parts),
        named=_named(parts),
        buckets=_unit_buckets(parts),
        heaviest=heaviest_of(c for p in parts for c in p.heaviest),
        failed=reduce(merged_failures, (failures_of(p.failed or {}) for p in parts), {}),
    )


def _unit_buckets(parts: list[ArmReply]) -> UnitBuckets:
    """The unit buckets over the replies of its partitions (empty when none holds any: the
    events were counted before buckets existed, or there were none)."""
    cells = [(cell.key, cell.lanes) for part in parts for cell in part.lanes]
    sums = [p.unit_sums for p in parts if p.unit_sums]
    if not cells and not sums:
        return NO_BUCKETS
    try:
        return UnitBuckets(in_slots(added_lanes(cells), sums))
    except ValueError as exc:
        raise StoreError(str(exc)) from None


def _named(parts: list[ArmReply]) -> dict[str, Conversions]:
    """Each named conversion over the replies of its partitions, its sums added in order."""
    found: dict[str, list[NamedReply]] = {}
    for part in parts:
        for reply in part.named:
            found.setdefault(reply.name, []).append(reply)
    return {
        name: Conversions(
            count=sum(r.count for r in replies),
            values=sum(r.values for r in replies),
            value_sum=_added(r.value_sums for r in replies),
            value_sq=_added(r.value_squares for r in replies),
        )
        for name, replies in found.items()
    }


def _added(groups: Iterable[tuple[float, ...]]) -> float:
    """The sum, added one by one in order (``sum`` may compensate, and a read never did)."""
    total = 0.0
    for group in groups:
        for x in group:
            total += x
    return total


class HoldoutReads:
    """A holdout's read (:data:`HOLDOUT_CELLS`) of each flag naming it, and of all of them
    together: the cumulative comparison's units, each counted once over the flags."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings, topic: str) -> None:
        cluster = isinstance(client, RedisCluster)
        self._reads = AggregateReads(
            client, prefix=settings.key_prefix, topic=topic, cluster=cluster
        )

    async def __call__(
        self, wanted: Sequence[tuple[str, Iterable[int]]]
    ) -> tuple[list[FlagAggregates], FlagAggregates]:
        reads = [(flag, tuple(sorted(set(versions)))) for flag, versions in wanted]
        async with translated():
            return await self._reads.read_together(reads, HOLDOUT_CELLS)
