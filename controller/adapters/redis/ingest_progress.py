"""Ingest's progress in Redis, as the gates read it: held partitions and counted-through times.

Keys (``P`` the key prefix, ``T`` the events topic, ``n`` a partition, ``S`` a topic read:
the events topic or the Collector's)::

    {P:T:n}:gap     hash: stored, beginning, end, why, choice, command (while held)
    P:held:T        set: the partitions held (any instance's)
    P:topic:T       hash: partitions (the topic's partition count last seen)
    P:counted:S     hash: partition -> when it was last counted through (epoch ms)
    P:owners:S      hash: partition -> the instance that last said it ingests it

A held partition (:class:`GapStore`): the gap found, the operator's choice, the resume.
A topic read beside the events topic (``S``, the Collector's, whose offsets live
in the slot of the events topic's sources: :func:`.keys.source_meta_key`) keeps
its gaps beside its meta hash, ``{P:T:-1}:src:S:m:gap`` (``m`` a partition of
``S``), and ``P:held:S`` and ``P:topic:S``.

The gap hash shares its partition's hash tag with the ``meta`` hash of
:mod:`.aggregates`, so the resume is one script on one slot: it checks the
owner's fencing epoch, sets the stored offset where the operator's choice
resumes, with the identity of the log it resumes on, and forgets the gap,
atomically. A partition the topic no longer has is retired alike, its epoch
bumped instead of checked (nobody owns it). Every instance can record a choice
(the command may reach any of them); the owner of the partition applies it.

A partition is *counted through* at a time when its owner had counted
everything the broker held on it as of its last fetch: the stored offset had
reached that fetch's high watermark. The owner writes the time every commit
interval while that holds, so a partition whose time falls behind is lagging
(its owner is behind, stopped or being replaced). The owner names itself with
the time, so an alert about a partition that does not catch up can say who
ingests it. The held partitions are the :class:`GapStore`'s. All are
read by every instance that gates, with the next offsets the flushes stored
(the aggregate store's meta hashes): what a stage's log-end targets are
compared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from controller.adapters.redis.cells.layout import partition_tag, source_meta_key
from controller.adapters.redis.client import RedisClient, as_text, translated
from controller.core.machine import CHOICES, Choice, LogGap, LogIdentity
from controller.settings import RedisSettings

_IDENTITY = """
local function identify(meta, topic_id, partitions)
  if topic_id ~= nil and topic_id ~= '' then redis.call('HSET', meta, 'topic_id', topic_id) end
  if partitions ~= nil and partitions ~= '' then
    redis.call('HSET', meta, 'partitions', partitions)
  end
end
"""
_RESUME = (
    _IDENTITY
    + """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'offset', ARGV[2])
identify(KEYS[1], ARGV[3], ARGV[4])
redis.call('DEL', KEYS[2])
return 1
"""
)
_RETIRE = (
    _IDENTITY
    + """
if redis.call('HEXISTS', KEYS[2], 'choice') == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'offset', 0)
identify(KEYS[1], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""
)
_CHOOSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'choice', ARGV[1], 'command', ARGV[2])
return 1
"""


class GapStore:
    """The held partitions of one topic read (the events topic, or ``source``), in Redis."""

    def __init__(
        self,
        client: RedisClient,
        *,
        settings: RedisSettings,
        topic: str,
        source: str | None = None,
    ) -> None:
        """``topic``: the events topic; ``source``: another topic read beside it, whose
        offsets :class:`.aggregates.RedisAggregateStore` keeps with that ``source``."""
        self._redis = client
        self._prefix, self._topic, self._source = settings.key_prefix, topic, source
        self._resume = client.register_script(_RESUME)
        self._retire = client.register_script(_RETIRE)
        self._choose = client.register_script(_CHOOSE)

    def _meta(self, partition: int) -> str:
        if self._source is None:
            return f"{partition_tag(self._prefix, self._topic, partition)}:meta"
        return source_meta_key(self._prefix, self._topic, self._source, partition)

    def _gap(self, partition: int) -> str:
        return self._meta(partition).removesuffix(":meta") + ":gap"

    @property
    def _held_key(self) -> str:
        return f"{self._prefix}:held:{self._source or self._topic}"

    @property
    def _topic_key(self) -> str:
        return f"{self._prefix}:topic:{self._source or self._topic}"

    async def record(self, gap: LogGap) -> None:
        """Hold ``gap``'s partition; a choice already made for it is kept."""
        stored = -1 if gap.stored is None else gap.stored
        fields = {"stored": stored, "beginning": gap.beginning, "end": gap.end, "why": gap.why}
        async with translated():
            await self._redis.hset(self._gap(gap.partition), mapping=fields)  # type: ignore[arg-type]
            await self._redis.sadd(self._held_key, gap.partition)

    async def held(self) -> set[int]:
        """The partitions held now, by any instance."""
        async with translated():
            members = await self._redis.smembers(self._held_key)
            found = sorted(int(m) for m in members)
            alive = [await self._redis.exists(self._gap(p)) for p in found]
        return {p for p, there in zip(found, alive, strict=True) if there}

    async def choose(self, partitions: list[int], choice: Choice, command_id: str) -> list[int]:
        """Record ``choice`` for each of ``partitions`` still held; return those."""
        done = []
        async with translated():
            for p in partitions:
                keys = [self._gap(p)]
                if int(await self._choose(keys=keys, args=[choice, command_id])):
                    done.append(p)
        return done

    async def choice(self, partition: int) -> tuple[Choice, int] | None:
        """The operator's choice for ``partition`` and the log end when its gap was found."""
        async with translated():
            choice, end = await self._redis.hmget(self._gap(partition), "choice", "end")
        text = choice.decode() if isinstance(choice, bytes) else choice
        for known in CHOICES:
            if text == known and end is not None:
                return known, int(end)
        return None

    async def resume(
        self, partition: int, *, epoch: int, offset: int, log: LogIdentity | None = None
    ) -> bool:
        """Store ``offset`` as where ``partition`` resumes, on the log ``log`` (its identity
        kept as stored where unknown), and forget its gap, atomically, if ``epoch`` is
        still the partition's; False when another owner claimed it."""
        keys = [self._meta(partition), self._gap(partition)]
        fields = (log or LogIdentity(None, None)).fields()
        async with translated():
            args: list[str | int] = [epoch, offset, fields["topic_id"], fields["partitions"]]
            done = int(await self._resume(keys=keys, args=args))
            if done:
                await self._redis.srem(self._held_key, partition)
        return bool(done)

    async def stored(self, partition: int) -> int | None:
        """The stored offset of ``partition``, None if it was never flushed."""
        async with translated():
            value = await self._redis.hget(self._meta(partition), "offset")
        return None if value is None else int(value)

    async def retire(self, partition: int, *, log: LogIdentity | None) -> bool:
        """Forget the held ``partition`` the topic no longer has, once an operator chose:
        its offset becomes 0 on the log ``log`` (read from the start should the topic grow
        again) and its epoch is bumped (fencing a claim made on stale metadata),
        atomically; False when no choice is recorded."""
        keys = [self._meta(partition), self._gap(partition)]
        fields = (log or LogIdentity(None, None)).fields()
        async with translated():
            done = int(await self._retire(keys=keys, args=list(fields.values())))
            if done:
                await self._redis.srem(self._held_key, partition)
        return bool(done)

    async def recorded_partitions(self) -> int | None:
        """The events topic's partition count last seen, if any."""
        async with translated():
            value = await self._redis.hget(self._topic_key, "partitions")
        return None if value is None else int(value)

    async def record_partitions(self, count: int) -> None:
        async with translated():
            await self._redis.hset(self._topic_key, "partitions", count)

    async def record_starts(self, starts: Mapping[int, int]) -> None:
        """Where each partition's log starts as ingest first sees it; a start recorded
        before is kept."""
        if not starts:
            return
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for partition, start in sorted(starts.items()):
                pipe.hsetnx(self._topic_key, f"start:{partition}", start)
            await pipe.execute()

    async def first_start(self, partition: int) -> int | None:
        """Where ``partition``'s log started when ingest first saw it; None if not recorded
        (a topic first read by a version that did not record it)."""
        async with translated():
            value = await self._redis.hget(self._topic_key, f"start:{partition}")
        return None if value is None else int(value)


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
        caught: Mapping[int, datetime],
        *,
        partitions: int | None = None,
        owned: Iterable[int] = (),
        owner: str | None = None,
    ) -> None:
        """``caught``: each partition counted through, and when; with ``partitions``, the
        topic's count now, the times of partitions it no longer has are forgotten (they
        carry nothing); with ``owner``, it is named the instance that ingests the ``owned``
        partitions."""
        mine: list[int] = sorted(owned)
        async with translated():
            if caught:
                await self._redis.hset(
                    self._key, mapping={p: int(t.timestamp() * 1000) for p, t in caught.items()}
                )
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
