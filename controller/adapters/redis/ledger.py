"""Events sent over HTTP, remembered by id so the intake can say which were sent before.

Keys (``P`` is the key prefix)::

    P:intake:event:<event id>   string with a TTL: the SHA-256 (32 hex digits) of the
                                event's content as the broker acknowledged it

An id is written (``SET NX``) only after the broker acknowledged its event,
and read before a batch is sent. This is what the intake can know at
acceptance, best effort: counting each event once is the flush's work (the
partition's recent ids, :mod:`controller.adapters.redis.aggregates`). One
key per event, each a single-key command in a pipeline, so it runs on Redis
Cluster too. A batch's keys go in pipelines of at most :data:`SLICE` commands,
one after another: packing and parsing thousands of answers at once would hold
the event loop for tens of milliseconds at a time, and a kill waits behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.adapters.redis.client import RedisClient, translated
from controller.settings import RedisSettings

SLICE = 256
"""The most commands one pipeline of the ledger holds."""


class EventLedger:
    """Which events were sent over HTTP (acknowledged by the broker), by id, with their content."""

    def __init__(self, redis: RedisClient, *, settings: RedisSettings) -> None:
        self._redis, self._prefix = redis, settings.key_prefix

    def _key(self, event_id: str) -> str:
        return f"{self._prefix}:intake:event:{event_id}"

    async def recall(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The content hash of each of ``event_ids`` that was sent before (absent: not known)."""
        found: list[object] = []
        for start in range(0, len(event_ids), SLICE):
            async with translated(), self._redis.pipeline(transaction=False) as pipe:
                for event_id in event_ids[start : start + SLICE]:
                    pipe.get(self._key(event_id))
                found.extend(await pipe.execute())
        return {
            event_id: value.decode() if isinstance(value, bytes) else str(value)
            for event_id, value in zip(event_ids, found, strict=True)
            if value is not None
        }

    async def remember(self, hashes: Mapping[str, str], *, ttl_s: int) -> None:
        """Record events the broker acknowledged; an id recorded before keeps its first content."""
        items = list(hashes.items())
        for start in range(0, len(items), SLICE):
            async with translated(), self._redis.pipeline(transaction=False) as pipe:
                for event_id, digest in items[start : start + SLICE]:
                    pipe.set(self._key(event_id), digest, nx=True, ex=ttl_s)
                await pipe.execute()
