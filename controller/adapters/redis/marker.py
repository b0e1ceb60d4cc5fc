"""The store's identity: how a store that came back empty is told from one that kept its data.

Key (``P`` the key prefix)::

    P:store    string: the store's identity, a random token written once

Redis restarted without its data (no persistence, a lost volume), a failover to
a replica that never synced, a ``FLUSHALL``: each leaves a store that answers
as if nothing happened, with every flag's state, every count and every offset
gone. The controller writes an identity into the store when it first finds
none (:meth:`StoreMarker.claim`) and reads it back beside what it serves
(:meth:`StoreMarker.read`): an identity gone, or another than the one known,
is a store that lost what it held. On Redis Cluster the key lives on one
master, so it tells only that master's loss.
"""

from __future__ import annotations

import secrets

from controller.adapters.redis.client import RedisClient, as_text, translated
from controller.settings import RedisSettings


class StoreMarker:
    """Reads and writes the store's identity."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings) -> None:
        self._redis = client
        self.key = f"{settings.key_prefix}:store"
        """The identity's key."""

    async def read(self) -> str | None:
        """The store's identity; None: it has none (new, or it lost what it held)."""
        async with translated():
            found = await self._redis.get(self.key)
        return None if found is None else as_text(found)

    async def claim(self) -> tuple[str, bool]:
        """The store's identity, written now if it had none; and whether it was written."""
        token = secrets.token_hex(16)
        async with translated():
            written = await self._redis.set(self.key, token, nx=True)
            found = token if written else await self._redis.get(self.key)
        if found is None:  # dropped between the two calls: another loss, claimed again
            return await self.claim()
        return as_text(found), bool(written)
