"""Segments in Redis: each segment's record and its id list's parts, apart from flag states.

Keys (``P`` is the key prefix; one hash tag per segment, so a script touches one slot)::

    {P:segment:<name>}               string: {"record": {...}, "applied": [ids],
                                     "delivered": [topic:partition:offset]} (JSON)
    {P:segment:<name>}:parts         list: the id list's parts, in order
    {P:segment:<name>}:up:<upload>   hash: part index -> data, of an upload under way (TTL)
    {P:segment:<name>}:from:<upload> hash: part index -> the record it was read from (TTL)
    P:segments                       set: the names of every segment ever put

A replacement is one script: it checks the version it replaces, then writes
the record and the parts together, so a reader never sees a record with
another version's parts, and the applied ids are saved with the records they
were read from, so a record read again is told from a command sent again. A
deleted segment keeps its record (``deleted``), so versions keep rising when
the name is put again.
"""

from __future__ import annotations

import orjson

from controller.adapters.redis.client import RedisClient, translated
from controller.ports import StoredSegment
from controller.settings import RedisSettings

_PUT = """
local held = redis.call('GET', KEYS[1])
local version = 0
if held then version = cjson.decode(held)['record']['version'] end
if version ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
for i = 3, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
return 1
"""


class SegmentStore:
    """The :class:`~controller.ports.Segments` port on Redis."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings) -> None:
        self._redis = client
        self._prefix = settings.key_prefix
        self._put = client.register_script(_PUT)

    def _key(self, name: str, part: str = "") -> str:
        return f"{{{self._prefix}:segment:{name}}}{part}"

    async def get(self, name: str, *, with_parts: bool) -> StoredSegment | None:
        async with translated():
            raw = await self._redis.get(self._key(name))
            parts = await self._redis.lrange(self._key(name, ":parts"), 0, -1) if with_parts else []
        if raw is None:
            return None
        held = orjson.loads(raw)
        decoded = [p.decode() if isinstance(p, bytes) else str(p) for p in parts]
        applied, delivered = tuple(held.get("applied", ())), tuple(held.get("delivered", ()))
        return StoredSegment(held["record"], decoded, applied, delivered)

    async def names(self) -> list[str]:
        async with translated():
            found = await self._redis.smembers(f"{self._prefix}:segments")
        return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in found)

    async def put(self, name: str, expected_version: int, segment: StoredSegment) -> bool:
        held = orjson.dumps(
            {"record": segment.record, "applied": segment.applied, "delivered": segment.delivered}
        )
        keys = [self._key(name), self._key(name, ":parts")]
        async with translated():
            done = await self._put(keys=keys, args=[expected_version, held, *segment.parts])
            if done:
                await self._redis.sadd(f"{self._prefix}:segments", name)
        return bool(done)

    async def stage(
        self, name: str, upload: str, index: int, data: str, *, ttl_s: int, delivery: str = ""
    ) -> int:
        key, records = self._key(name, f":up:{upload}"), self._key(name, f":from:{upload}")
        async with translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(index), data)
            if delivery:
                pipe.hset(records, str(index), delivery)
            pipe.expire(key, ttl_s)
            pipe.expire(records, ttl_s)
            pipe.hlen(key)
            *_, count = await pipe.execute()
        return int(count)

    async def staged(self, name: str, upload: str) -> dict[int, str]:
        async with translated():
            found = await self._redis.hgetall(self._key(name, f":up:{upload}"))
        return {int(k): v.decode() if isinstance(v, bytes) else str(v) for k, v in found.items()}

    async def staged_from(self, name: str, upload: str) -> list[str]:
        async with translated():
            found = await self._redis.hvals(self._key(name, f":from:{upload}"))
        return [v.decode() if isinstance(v, bytes) else str(v) for v in found]

    async def drop_upload(self, name: str, upload: str) -> None:
        async with translated():
            await self._redis.delete(
                self._key(name, f":up:{upload}"), self._key(name, f":from:{upload}")
            )
