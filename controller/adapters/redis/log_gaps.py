"""Held events partitions in Redis: the gap found, the operator's choice, the resume.

Keys (``P`` the key prefix, ``T`` the events topic, ``n`` a partition)::

    {P:T:n}:gap         hash: stored, beginning, end, why, choice, command (while held)
    P:held:T            set: the partitions held (any instance's)
    P:topic:T           hash: partitions (the topic's partition count last seen)

The gap hash shares its partition's hash tag with the ``meta`` hash of
:mod:`.aggregates`, so the resume is one script on one slot: it checks the
owner's fencing epoch, sets the stored offset where the operator's choice
resumes and forgets the gap, atomically. Every instance can record a choice
(the command may reach any of them); the owner of the partition applies it.
"""

from __future__ import annotations

from controller.adapters.redis.client import RedisClient, translated
from controller.adapters.redis.keys import partition_tag
from controller.core.machine import CHOICES, Choice, LogGap
from controller.settings import RedisSettings

_RESUME = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'offset', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""
_CHOOSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'choice', ARGV[1], 'command', ARGV[2])
return 1
"""


class GapStore:
    """The held partitions of one events topic, in Redis."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings, topic: str) -> None:
        self._redis = client
        self._prefix, self._topic = settings.key_prefix, topic
        self._resume = client.register_script(_RESUME)
        self._choose = client.register_script(_CHOOSE)

    def _tag(self, partition: int) -> str:
        return partition_tag(self._prefix, self._topic, partition)

    @property
    def _held_key(self) -> str:
        return f"{self._prefix}:held:{self._topic}"

    @property
    def _topic_key(self) -> str:
        return f"{self._prefix}:topic:{self._topic}"

    async def record(self, gap: LogGap) -> None:
        """Hold ``gap``'s partition; a choice already made for it is kept."""
        stored = -1 if gap.stored is None else gap.stored
        fields = {"stored": stored, "beginning": gap.beginning, "end": gap.end, "why": gap.why}
        async with translated():
            await self._redis.hset(f"{self._tag(gap.partition)}:gap", mapping=fields)  # type: ignore[arg-type]
            await self._redis.sadd(self._held_key, gap.partition)

    async def held(self) -> set[int]:
        """The partitions held now, by any instance."""
        async with translated():
            members = await self._redis.smembers(self._held_key)
            found = sorted(int(m) for m in members)
            alive = [await self._redis.exists(f"{self._tag(p)}:gap") for p in found]
        return {p for p, there in zip(found, alive, strict=True) if there}

    async def choose(self, partitions: list[int], choice: Choice, command_id: str) -> list[int]:
        """Record ``choice`` for each of ``partitions`` still held; return those."""
        done = []
        async with translated():
            for p in partitions:
                keys = [f"{self._tag(p)}:gap"]
                if int(await self._choose(keys=keys, args=[choice, command_id])):
                    done.append(p)
        return done

    async def choice(self, partition: int) -> tuple[Choice, int] | None:
        """The operator's choice for ``partition`` and the log end when its gap was found."""
        async with translated():
            choice, end = await self._redis.hmget(f"{self._tag(partition)}:gap", "choice", "end")
        text = choice.decode() if isinstance(choice, bytes) else choice
        for known in CHOICES:
            if text == known and end is not None:
                return known, int(end)
        return None

    async def resume(self, partition: int, *, epoch: int, offset: int) -> bool:
        """Store ``offset`` as where ``partition`` resumes and forget its gap, atomically,
        if ``epoch`` is still the partition's; False when another owner claimed it."""
        tag = self._tag(partition)
        async with translated():
            done = int(await self._resume(keys=[f"{tag}:meta", f"{tag}:gap"], args=[epoch, offset]))
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
