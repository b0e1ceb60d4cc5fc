"""Held events partitions in Redis: the gap found, the operator's choice, the resume.

Keys (``P`` the key prefix, ``T`` the events topic, ``n`` a partition)::

    {P:T:n}:gap         hash: stored, beginning, end, why, choice, command (while held)
    P:held:T            set: the partitions held (any instance's)
    P:topic:T           hash: partitions (the topic's partition count last seen)

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
"""

from __future__ import annotations

from controller.adapters.redis.client import RedisClient, translated
from controller.adapters.redis.layout import partition_tag, source_meta_key
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
