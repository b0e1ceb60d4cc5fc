"""The aggregate store on Redis: exactly-once flushes, fencing, reads.

Keys (``P`` is the key prefix, ``T`` the events topic, ``n`` a partition)::

    {P:T:n}:meta                  hash: epoch, offset (next offset to read)
    {P:T:n}:rejects               hash: reject reason -> count
    {P:T:n}:flags                 set: flags that received events
    {P:T:n}:dirty                 set: flags with events the engine has not gated yet
    {P:T:n}:a:<flag>:<ver>:<arm>  hash: counters, float sums, histogram h<i>
    {P:T:n}:u:<flag>:<ver>:<arm>  HyperLogLog of unit ids
    P:partitions:T                set: partitions ever claimed

Every key of one partition shares the hash tag ``{P:T:n}``, so a flush
touches one slot and runs on Redis Cluster. A flush is one Lua script that
checks the fencing epoch, compares the stored offset, applies every increment
and records the next offset, so a replayed batch is a no-op and a stale owner
cannot write. Aggregates expire ``aggregate_ttl_seconds`` after their last
write; the meta hash does not expire, because it is what makes replays safe.
Unique units are summed across partitions, which is exact up to HyperLogLog
error because events are keyed by unit id, so each unit lives on one partition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from controller.core.aggregates import ArmAggregate, FlagAggregates
from controller.core.errors import FencedError, FlushRefused, StoreError, StoreUnavailable
from controller.core.folding import PartitionDelta
from controller.core.messages import Arm
from controller.ports import Claim, FlushOutcome
from controller.settings import RedisSettings

_CLAIM = """
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return {epoch, redis.call('HGET', KEYS[1], 'offset') or '-1'}
"""
_FLUSH = resources.files(__package__).joinpath("flush.lua").read_text(encoding="utf-8")
_msgpack = msgspec.msgpack.Encoder()
_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class RedisAggregateStore:
    """Aggregates and partition offsets of one events topic, in Redis."""

    def __init__(self, client: aioredis.Redis, *, settings: RedisSettings, topic: str) -> None:
        self._redis = client
        self._prefix = settings.key_prefix
        self._topic = topic
        self._ttl = settings.aggregate_ttl_seconds
        self._claim = client.register_script(_CLAIM)
        self._flush = client.register_script(_FLUSH)

    def _tag(self, partition: int) -> str:
        return f"{{{self._prefix}:{self._topic}:{partition}}}"

    @property
    def _partitions_key(self) -> str:
        return f"{self._prefix}:partitions:{self._topic}"

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers."""
        async with translated():
            await self._redis.ping()

    async def claim(self, partition: int) -> Claim:
        """Take ownership of ``partition``: bump its epoch, return the stored offset."""
        async with translated():
            await self._redis.sadd(self._partitions_key, partition)
            epoch, offset = await self._claim(keys=[f"{self._tag(partition)}:meta"])
        stored = int(offset)
        return Claim(partition, int(epoch), None if stored < 0 else stored)

    async def flush(
        self, delta: PartitionDelta, *, epoch: int, expected_offset: int | None
    ) -> FlushOutcome:
        """Apply ``delta`` and advance the partition's offset, atomically, once.

        Raises :class:`FencedError` when another owner holds the partition (a
        newer epoch) or the stored offset is not the one this owner expects,
        and :class:`FlushRefused` when Redis would refuse part of the batch;
        in every one of these cases nothing was written.
        """
        keys, args = self._flush_arguments(delta, epoch, expected_offset)
        async with translated():
            code, detail = await self._flush(keys=keys, args=args)
        code = int(code)
        if code == 1:
            return FlushOutcome.APPLIED
        if code == 0:
            return FlushOutcome.REPLAYED
        if code in (-3, -4):
            raise FlushRefused(
                f"partition {delta.partition}: flush refused, nothing written: {_text(detail)}",
                per_cell=code == -3,
            )
        what = "epoch" if code == -1 else "stored offset"
        raise FencedError(
            f"partition {delta.partition}: flush refused, {what} is {_text(detail)}"
            f" (this owner holds epoch {epoch}, expected offset {expected_offset})"
        )

    def _flush_arguments(
        self, delta: PartitionDelta, epoch: int, expected_offset: int | None
    ) -> tuple[list[str], list[Any]]:
        tag = self._tag(delta.partition)
        keys = [f"{tag}:meta", f"{tag}:rejects", f"{tag}:flags", f"{tag}:dirty"]
        cells = []
        for (flag, version, arm), cell in delta.cells.items():
            keys += [f"{tag}:a:{flag}:{version}:{arm}", f"{tag}:u:{flag}:{version}:{arm}"]
            # Floats travel as repr() text: Lua would print numbers with 14 digits only.
            floats = {k: repr(v) for k, v in cell.floats().items()}
            cells.append((flag, cell.counters(), floats, list(cell.units)))
        # One msgpack argument instead of thousands: packing arguments one by one
        # was a fifth of ingest's CPU time.
        payload = _msgpack.encode((dict(delta.rejects), cells))
        expected = -1 if expected_offset is None else expected_offset
        return keys, [epoch, expected, delta.next_offset, self._ttl, payload]

    async def partitions(self) -> list[int]:
        """Every partition of the topic that has ever been claimed."""
        async with translated():
            members = await self._redis.smembers(self._partitions_key)
        return sorted(int(m) for m in members)

    async def offset(self, partition: int) -> int | None:
        """The next offset to read on ``partition``, or None if it was never flushed."""
        async with translated():
            value = await self._redis.hget(f"{self._tag(partition)}:meta", "offset")
        return None if value is None else int(value)

    async def pop_dirty(self, limit: int = 10_000) -> set[str]:
        """Flags that received events since the last call (on any partition)."""
        parts = await self.partitions()
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for p in parts:
                pipe.spop(f"{self._tag(p)}:dirty", limit)
            results = await pipe.execute()
        return {_text(m) for members in results for m in (members or [])}

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
                totals[_text(reason)] = totals.get(_text(reason), 0) + int(count)
        return totals

    async def read(self, flag: str, versions: Iterable[int]) -> FlagAggregates:
        """Both arms of ``flag`` summed over ``versions`` and every partition."""
        wanted = sorted(set(versions))
        parts = await self.partitions()
        arms = (Arm.TREATMENT, Arm.CONTROL)
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for p, arm in ((p, arm) for p in parts for arm in arms):
                tag = self._tag(p)
                for v in wanted:
                    pipe.hgetall(f"{tag}:a:{flag}:{v}:{arm}")
                pipe.pfcount(*[f"{tag}:u:{flag}:{v}:{arm}" for v in wanted] or [f"{tag}:none"])
            results = await pipe.execute()
        return _sum_arms(flag, wanted, results, len(parts))


def _sum_arms(flag: str, versions: list[int], results: list[Any], n_parts: int) -> FlagAggregates:
    """Sum pipeline results laid out as partition, arm, then (versions..., pfcount)."""
    fields: dict[Arm, dict[str, float]] = {Arm.TREATMENT: {}, Arm.CONTROL: {}}
    units = {Arm.TREATMENT: 0, Arm.CONTROL: 0}
    stride = len(versions) + 1
    for index in range(n_parts * 2):
        arm = Arm.TREATMENT if index % 2 == 0 else Arm.CONTROL
        chunk = results[index * stride : (index + 1) * stride]
        for row in chunk[:-1]:
            for name, value in row.items():
                key = _text(name)
                fields[arm][key] = fields[arm].get(key, 0) + float(value)
        units[arm] += int(chunk[-1])
    return FlagAggregates(
        flag=flag,
        versions=frozenset(versions),
        treatment=ArmAggregate.from_fields(fields[Arm.TREATMENT], units=units[Arm.TREATMENT]),
        control=ArmAggregate.from_fields(fields[Arm.CONTROL], units=units[Arm.CONTROL]),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Translate redis-py errors into the controller's tree at this edge."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"redis unreachable: {exc}") from exc
    except redis_errors.BusyLoadingError as exc:
        raise StoreUnavailable(f"redis is loading its data set: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise StoreError(f"redis error: {exc}") from exc


@asynccontextmanager
async def connect(settings: RedisSettings) -> AsyncIterator[aioredis.Redis]:
    """A Redis client for ``settings``, closed on exit."""
    password = settings.password.get_secret_value() if settings.password else None
    client = aioredis.Redis.from_url(
        settings.url,
        password=password,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=10,
    )
    try:
        yield client
    finally:
        await client.aclose()
