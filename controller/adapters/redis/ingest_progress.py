"""Ingest's progress in Redis, as the gates read it: held partitions and counted-through times.

Keys (``P`` the key prefix, ``S`` a topic read: the events topic or the Collector's)::

    P:counted:S     hash: partition -> when it was last counted through (epoch ms)
    P:owners:S      hash: partition -> the instance that last said it ingests it

A partition is *counted through* at a time when its owner had counted
everything the broker held on it as of its last fetch: the stored offset had
reached that fetch's high watermark. The owner writes the time every commit
interval while that holds, so a partition whose time falls behind is lagging
(its owner is behind, stopped or being replaced). The owner names itself with
the time, so an alert about a partition that does not catch up can say who
ingests it. The held partitions are the :class:`.log_gaps.GapStore`'s. All are
read by every instance that gates, with the next offsets the flushes stored
(the aggregate store's meta hashes): what a stage's log-end targets are
compared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from controller.adapters.redis.client import RedisClient, as_text, translated
from controller.adapters.redis.layout import partition_tag, source_meta_key
from controller.adapters.redis.log_gaps import GapStore
from controller.settings import RedisSettings


def counted_key(prefix: str, topic: str) -> str:
    """The hash of when each partition of ``topic`` was last counted through."""
    return f"{prefix}:counted:{topic}"


def owners_key(prefix: str, topic: str) -> str:
    """The hash of which instance last said it ingests each partition of ``topic``."""
    return f"{prefix}:owners:{topic}"


class IngestProgressStore:
    """What ingest holds, and how far it counted, for every topic it reads."""

    def __init__(
        self,
        client: RedisClient,
        *,
        settings: RedisSettings,
        gaps: Mapping[str, GapStore],
        events: str | None = None,
    ) -> None:
        """``gaps``: the held partitions' store of each topic read, by topic; ``events``:
        the events topic (the others are sources counted into its partition -1)."""
        self._redis, self._prefix, self._gaps = client, settings.key_prefix, dict(gaps)
        self._events = events

    async def stored_offsets(
        self, wanted: Mapping[str, Iterable[int]]
    ) -> dict[str, dict[int, int | None]]:
        """Per topic, the next offset its flushes stored for each partition ``wanted``
        (None: never flushed), in one pipelined read."""
        keys = [(t, p, self._meta(t, p)) for t, parts in wanted.items() for p in sorted(parts)]
        if not keys:
            return {}
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for _, _, key in keys:
                pipe.hget(key, "offset")
            read = await pipe.execute()
        out: dict[str, dict[int, int | None]] = {t: {} for t in wanted}
        for (topic, partition, _), value in zip(keys, read, strict=True):
            out[topic][partition] = int(value) if _number(value) and int(value) >= 0 else None
        return out

    def _meta(self, topic: str, partition: int) -> str:
        events = self._events or topic
        if topic == events:
            return f"{partition_tag(self._prefix, events, partition)}:meta"
        return source_meta_key(self._prefix, events, topic, partition)

    async def owners(self) -> dict[str, dict[int, str]]:
        """Per topic read, the instance that last said it ingests each partition."""
        out: dict[str, dict[int, str]] = {}
        async with translated():
            for topic in self._gaps:
                read = await self._redis.hgetall(owners_key(self._prefix, topic))
                out[topic] = {int(p): as_text(o) for p, o in read.items() if _number(p)}
        return out

    async def held(self) -> dict[str, set[int]]:
        return {topic: await store.held() for topic, store in self._gaps.items()}

    async def counted_through(self) -> dict[str, dict[int, datetime]]:
        out: dict[str, dict[int, datetime]] = {}
        async with translated():
            for topic in self._gaps:
                read = await self._redis.hgetall(counted_key(self._prefix, topic))
                out[topic] = {int(p): _time(ms) for p, ms in read.items() if _number(p, ms)}
        return out


class CountedTimes:
    """Records when the partitions of one topic an owner reads were last counted through."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings, topic: str) -> None:
        self._redis, self._key = client, counted_key(settings.key_prefix, topic)
        self._owners = owners_key(settings.key_prefix, topic)

    async def record(
        self,
        at: datetime,
        caught: list[int],
        *,
        partitions: int | None = None,
        owned: Iterable[int] = (),
        owner: str | None = None,
    ) -> None:
        """``caught`` were counted through at ``at``; with ``partitions``, the topic's count
        now, the times of partitions it no longer has are forgotten (they carry nothing);
        with ``owner``, it is named the instance that ingests the ``owned`` partitions."""
        ms = int(at.timestamp() * 1000)
        mine: list[int] = sorted(owned)
        async with translated():
            if caught:
                await self._redis.hset(self._key, mapping=dict.fromkeys(caught, ms))
            if mine and owner:
                await self._redis.hset(self._owners, mapping=dict.fromkeys(mine, owner))
            if partitions is not None:
                known = await self._redis.hkeys(self._key)
                gone = [k for k in known if _number(k) and int(k) >= partitions]
                if gone:
                    await self._redis.hdel(self._key, *gone)
                    await self._redis.hdel(self._owners, *gone)


def _number(*values: object) -> bool:
    try:
        for value in values:
            int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
    return True


def _time(ms: bytes | str | int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def ingest_progress(
    client: RedisClient, *, settings: RedisSettings, events: str, beside: tuple[str, ...] = ()
) -> IngestProgressStore:
    """The progress of ingest on the events topic and the topics read ``beside`` it."""
    gaps = {
        topic: GapStore(client, settings=settings, topic=events, source=None)
        if topic == events
        else GapStore(client, settings=settings, topic=events, source=topic)
        for topic in (events, *beside)
    }
    return IngestProgressStore(client, settings=settings, gaps=gaps, events=events)
