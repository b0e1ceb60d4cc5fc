"""What the flag-backend sync applied last, per flag, next to the flag's rollout state.

Key (``P`` is the key prefix)::

    {P:flag:<flag>}:backend   string: the sync's record (JSON), see core.serving.Applied

Only the sync of the instance that owns the flag writes it. A record that
cannot be read counts as none: the sync then compares with nothing, writes
what the rollout wants and records it afresh.
"""

from __future__ import annotations

import orjson

from controller.adapters.redis.client import RedisClient, translated
from controller.core.serving import Applied
from controller.settings import RedisSettings


class AppliedStore:
    """The sync's per-flag record: what it applied, what it is applying, and any hold."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings) -> None:
        self._redis = client
        self._prefix = settings.key_prefix

    def _key(self, flag: str) -> str:
        return f"{{{self._prefix}:flag:{flag}}}:backend"

    async def get(self, flag: str) -> Applied | None:
        async with translated():
            raw = await self._redis.get(self._key(flag))
        if raw is None:
            return None
        try:
            return Applied.from_json(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return None

    async def put(self, flag: str, record: Applied) -> None:
        async with translated():
            await self._redis.set(self._key(flag), orjson.dumps(record.to_json()))
