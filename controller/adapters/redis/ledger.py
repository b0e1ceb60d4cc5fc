"""Batches of events sent over HTTP, remembered so a client's retry is sent once.

Keys (``P`` is the key prefix)::

    P:intake:<batch id>   string with a TTL: ``pending:<token>`` while one
                          request sends the batch, ``done`` once the broker
                          acknowledged it

A batch is begun with ``SET NX`` (pending, with a short TTL), marked done
after the broker's acknowledgement (with the long TTL of the dedupe window),
and abandoned (deleted, only by the request that began it) when sending
failed, so the client's retry sends it.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from controller.adapters.redis.client import RedisClient, translated
from controller.settings import RedisSettings

# KEYS: the batch   ARGV: the pending value to delete
_ABANDON = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Begun(StrEnum):
    """What :meth:`BatchLedger.begin` found: the batch is this request's, in flight, or sent."""

    FRESH = "fresh"
    PENDING = "pending"
    DONE = "done"


class BatchLedger:
    """Which batches were sent (``done``) or are being sent (``pending``), by id."""

    def __init__(self, redis: RedisClient, *, settings: RedisSettings) -> None:
        self._redis, self._prefix = redis, settings.key_prefix
        self._abandon = redis.register_script(_ABANDON)

    def _key(self, batch_id: str) -> str:
        return f"{self._prefix}:intake:{batch_id}"

    async def begin(self, batch_id: str, *, pending_ttl_s: int) -> tuple[Begun, str]:
        """Take ``batch_id`` for sending; what was found, and the token to finish it with."""
        token = f"pending:{uuid.uuid4().hex}"
        async with translated():
            if await self._redis.set(self._key(batch_id), token, nx=True, ex=pending_ttl_s):
                return Begun.FRESH, token
            found = await self._redis.get(self._key(batch_id))
        if found is None:  # expired between the two calls: the caller retries
            return Begun.PENDING, token
        text = found.decode() if isinstance(found, bytes) else str(found)
        return (Begun.DONE if text == "done" else Begun.PENDING), token

    async def done(self, batch_id: str, *, ttl_s: int) -> None:
        """Record that the broker acknowledged ``batch_id``: retries of it are duplicates."""
        async with translated():
            await self._redis.set(self._key(batch_id), "done", ex=ttl_s)

    async def abandon(self, batch_id: str, token: str) -> None:
        """Forget ``batch_id`` if this request still holds it, so a retry sends it."""
        async with translated():
            await self._abandon(keys=[self._key(batch_id)], args=[token])
