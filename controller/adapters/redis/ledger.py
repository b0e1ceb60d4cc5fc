"""Events sent over HTTP, remembered by id so the intake can say which were sent before.

Keys (``P`` is the key prefix)::

    P:intake:event:<event id>   string with a TTL: the SHA-256 (32 hex digits) of the
                                event's content as the broker acknowledged it

An id is written (``SET NX``) only after the broker acknowledged its event,
and read before a batch is sent. This is what the intake can know at
acceptance, best effort: counting each event once is the flush's work (the
partition's recent ids, :mod:`controller.adapters.redis.aggregates`). One
key per event. A batch's keys are read and written :data:`SLICE` at a time,
one slice after another: on one node with one command each (``MGET``, and a
script of ``SET NX EX``), on a cluster, whose keys lie in many slots, with a
pipeline of single-key commands. Packing and parsing thousands of commands
at once would hold the event loop for tens of milliseconds at a time, and a
kill would wait behind it; a slice is a few milliseconds of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio.cluster import RedisCluster

from controller.adapters.redis.client import RedisClient, translated
from controller.settings import RedisSettings

SLICE = 256
"""The most keys one command (or, on a cluster, one pipeline) of the ledger names."""
_REMEMBER = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1])
end
return #KEYS
"""


class EventLedger:
    """Which events were sent over HTTP (acknowledged by the broker), by id, with their content."""

    def __init__(self, redis: RedisClient, *, settings: RedisSettings) -> None:
        self._redis, self._prefix = redis, settings.key_prefix
        self._cluster = isinstance(redis, RedisCluster)
        self._remember = redis.register_script(_REMEMBER)

    def _key(self, event_id: str) -> str:
        return f"{self._prefix}:intake:event:{event_id}"

    async def recall(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The content hash of each of ``event_ids`` that was sent before (absent: not known)."""
        found: list[object] = []
        for start in range(0, len(event_ids), SLICE):
            keys = [self._key(event_id) for event_id in event_ids[start : start + SLICE]]
            async with translated():
                found.extend(await self._values(keys))
        return {
            event_id: value.decode() if isinstance(value, bytes) else str(value)
            for event_id, value in zip(event_ids, found, strict=True)
            if value is not None
        }

    async def remember(self, hashes: Mapping[str, str], *, ttl_s: int) -> None:
        """Record events the broker acknowledged; an id recorded before keeps its first content."""
        items = list(hashes.items())
        for start in range(0, len(items), SLICE):
            part = items[start : start + SLICE]
            async with translated():
                await self._set_new([self._key(i) for i, _ in part], [d for _, d in part], ttl_s)

    async def _values(self, keys: list[str]) -> list[object]:
        if not self._cluster:
            return list(await self._redis.mget(keys))
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
            return list(await pipe.execute())

    async def _set_new(self, keys: list[str], digests: list[str], ttl_s: int) -> None:
        if not self._cluster:
            await self._remember(keys=keys, args=[ttl_s, *digests])
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, digest in zip(keys, digests, strict=True):
                pipe.set(key, digest, nx=True, ex=ttl_s)
            await pipe.execute()
