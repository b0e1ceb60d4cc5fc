"""The aggregate read before it became one script call, kept to measure the new one against.

Before, a read was ``SMEMBERS`` of the partitions, then one pipeline of an
``HGETALL`` per partition, arm and version and a ``PFCOUNT`` per partition
and arm (17 commands for four partitions and one version), each hash turned
into a dict of field names and summed into :class:`ArmAggregate`. (The unit
buckets came later: this read also gets each cell's string of them and
turns it into the fields it stands for, so that it reads what the new one does.)
:class:`LegacyAggregateStore` is :class:`RedisAggregateStore` with that read
(one node only: the benchmark runs on one), so ``bench/gates.py`` times both
on the same data in the same run and checks that they read the same;
:func:`counting_wire` counts what each sends. Before, there was no read of many
flags at once either: each gate read its own flag, which is what
:meth:`LegacyAggregateStore.read_many` does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio.connection import AbstractConnection

from controller.adapters.redis.aggregate_reads import ARMS, NO_BUCKETS, Cells
from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.cells.layout import LANE_KINDS
from controller.adapters.redis.client import translated
from controller.core.stats import UNIT_BUCKETS
from controller.core.stats.aggregates import BOTH_FIELD, WATCHED_FIELD, ArmAggregate, FlagAggregates
from controller.core.wire.messages import Arm


class LegacyAggregateStore(RedisAggregateStore):
    """The aggregate store with the read of before batching (on one Redis node)."""

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates:
        wanted = sorted(set(versions))
        parts = await self.partitions()
        cells = [(self._tag(p), arm) for p in parts for arm in (Arm.TREATMENT, Arm.CONTROL)]
        hashes = [f"{tag}:a:{flag}:{v}:{arm}" for tag, arm in cells for v in wanted]
        lanes = [
            f"{tag}:{form}:{flag}:{v}:{arm}" for tag, arm in cells for v in wanted for form in FORMS
        ]
        units = [[f"{tag}:u:{flag}:{v}:{arm}" for v in wanted] for tag, arm in cells]
        async with translated():
            rows, strings, counts = await self._legacy_read(
                hashes, lanes, [keys for keys in units if keys]
            )
        per_cell = iter(counts)
        rows = [
            {**row, **_lane_fields(strings[FORM_COUNT * i : FORM_COUNT * (i + 1)])}
            for i, row in enumerate(rows)
        ]
        return _sum_arms(flag, wanted, rows, [next(per_cell) if k else 0 for k in units])

    async def read_many(
        self, wanted: Sequence[tuple[str, Iterable[int]]], cells: Cells = ARMS
    ) -> list[FlagAggregates]:
        """One read per flag, one after the other, as each gate read its own flag (the arms:
        the old read knew no other cells)."""
        if cells != ARMS:
            raise ValueError("the old read reads the arms alone")
        return [await self.read(flag, versions) for flag, versions in wanted]

    async def _legacy_read(
        self, hashes: list[str], lanes: list[str], units: list[list[str]]
    ) -> tuple[list[Any], list[Any], list[int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in hashes:
                pipe.hgetall(key)
            for key in lanes:
                pipe.get(key)
            for keys in units:
                pipe.pfcount(*keys)
            results = await pipe.execute()
        split, more = len(hashes), len(hashes) + len(lanes)
        return results[:split], results[split:more], [int(c) for c in results[more:]]


def _sum_arms(flag: str, versions: list[int], rows: list[Any], units: list[int]) -> FlagAggregates:
    """Sum hash rows laid out as partition, arm, version, and unit counts as partition, arm."""
    fields: dict[Arm, dict[str, float]] = {Arm.TREATMENT: {}, Arm.CONTROL: {}}
    totals = {Arm.TREATMENT: 0, Arm.CONTROL: 0}
    stride = len(versions)
    for index, count in enumerate(units):
        arm = Arm.TREATMENT if index % 2 == 0 else Arm.CONTROL
        for row in rows[index * stride : (index + 1) * stride]:
            for name, value in row.items():
                key = _text(name)
                fields[arm][key] = fields[arm].get(key, 0) + float(value)
        totals[arm] += count
    arms = (fields[Arm.TREATMENT], fields[Arm.CONTROL])
    return FlagAggregates(
        flag=flag,
        versions=frozenset(versions),
        treatment=_events_arm(fields[Arm.TREATMENT], totals[Arm.TREATMENT]),
        control=_events_arm(fields[Arm.CONTROL], totals[Arm.CONTROL]),
        watched=int(sum(arm.get(WATCHED_FIELD, 0) for arm in arms)),
        both_arms=int(sum(arm.get(BOTH_FIELD, 0) for arm in arms)),
    )


def _events_arm(fields: dict[str, float], units: int) -> ArmAggregate:
    """An events arm, as the store reads one: counted in buckets of units, empty ones
    when none of its events were (the store's NO_BUCKETS)."""
    arm = ArmAggregate.from_fields(fields, units=units)
    return arm if arm.buckets is not None else replace(arm, buckets=NO_BUCKETS)


FORMS = {"b": (">q", 1), "n": (">H", 1), "h": (">I", 2**16)}
"""A cell's strings of lanes: 64-bit lanes (kept before), low words, high words; each one's
struct format and what a lane of it counts for."""
FORM_COUNT = len(FORMS)


def _lane_fields(packed: Sequence[bytes | None]) -> dict[str, int]:
    """A cell's strings of unit bucket lanes (:data:`FORMS`, in order) as the hash fields
    they stand for."""
    fields: dict[str, int] = {}
    for data, (layout, scale) in zip(packed, FORMS.values(), strict=True):
        size = struct.calcsize(layout)
        whole = (data or b"")[: len(data or b"") // size * size]
        for lane, (n,) in enumerate(struct.iter_unpack(layout, whole)):
            if n:
                field = f"u{lane % UNIT_BUCKETS}.{LANE_KINDS[lane // UNIT_BUCKETS]}"
                fields[field] = fields.get(field, 0) + n * scale
    return fields


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class Wire:
    """Commands this process packed, and the writes that sent them (one per round trip)."""

    commands: int = 0
    writes: int = 0


@contextmanager
def counting_wire() -> Iterator[Wire]:
    """Count the commands and writes of every Redis connection while inside (slower)."""
    wire = Wire()
    pack, send = AbstractConnection.pack_command, AbstractConnection.send_packed_command

    def packed(self: AbstractConnection, *args: Any) -> list[bytes]:
        wire.commands += 1
        return pack(self, *args)

    async def sent(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        wire.writes += 1
        await send(self, command, check_health)

    AbstractConnection.pack_command = packed  # type: ignore[method-assign]
    AbstractConnection.send_packed_command = sent  # type: ignore[method-assign]
    try:
        yield wire
    finally:
        AbstractConnection.pack_command = pack  # type: ignore[method-assign]
        AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
