"""Gate history in Redis: capped, expiring lists any instance can serve.

Keys (``P`` is the key prefix)::

    {P:history:<flag>}:points:<rollout id>:<stage>  list: encoded gate points, oldest first
    {P:history:<flag>}:messages                     list: the flag's decisions and alerts
    P:history:alerts                                list: recent alerts of every flag

A flag's keys share a hash tag, so each append (push, trim, expire) is one
MULTI/EXEC on one slot. Every list is trimmed on each push and expires
``ttl_seconds`` after its last write: a thousand rollouts of a day cost what
their caps allow and no more (``bench/console.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.adapters.redis.client import RedisClient, translated
from controller.settings import HistorySettings, RedisSettings

MAX_MESSAGE_BYTES = 16 * 1024
"""A decision bigger than this is not kept in the history (it is still published)."""


class RedisGateHistory:
    """:class:`~controller.ports.GateHistory` in Redis lists."""

    def __init__(
        self, client: RedisClient, *, settings: RedisSettings, history: HistorySettings
    ) -> None:
        self._redis = client
        self._prefix = settings.key_prefix
        self._settings = history

    def _key(self, flag: str, part: str) -> str:
        return f"{{{self._prefix}:history:{flag}}}:{part}"

    def _points_key(self, flag: str, rollout_id: str, stage: int) -> str:
        return self._key(flag, f"points:{rollout_id}:{stage}")

    async def append_point(self, flag: str, rollout_id: str, stage: int, point: bytes) -> None:
        key = self._points_key(flag, rollout_id, stage)
        await self._push(key, point, self._settings.max_points_per_stage)

    async def _push(self, key: str, value: bytes, keep: int) -> None:
        async with translated(), self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, value)
            pipe.ltrim(key, -keep, -1)
            pipe.expire(key, self._settings.ttl_seconds)
            await pipe.execute()

    async def points(self, flag: str, rollout_id: str, stages: int) -> list[list[bytes]]:
        """Each stage's points, stage 0 first (empty for a stage with none)."""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for stage in range(stages):
                pipe.lrange(self._points_key(flag, rollout_id, stage), 0, -1)
            return list(await pipe.execute())

    async def latest(self, stages: Sequence[tuple[str, str, int]]) -> list[bytes | None]:
        """The last point of each ``(flag, rollout id, stage)``, in one round trip."""
        if not stages:
            return []
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for flag, rollout_id, stage in stages:
                pipe.lindex(self._points_key(flag, rollout_id, stage), -1)
            return list(await pipe.execute())

    async def append_message(self, flag: str | None, message: bytes, *, alert: bool) -> None:
        """Keep a published decision or alert: under its flag, and alerts also globally."""
        if len(message) > MAX_MESSAGE_BYTES:
            return
        if flag is not None:
            await self._push(self._key(flag, "messages"), message, self._settings.decisions_kept)
        if alert:
            await self._push(f"{self._prefix}:history:alerts", message, self._settings.alerts_kept)

    async def messages(self, flag: str) -> list[bytes]:
        async with translated():
            raw = await self._redis.lrange(self._key(flag, "messages"), 0, -1)
        return [_bytes(r) for r in raw]

    async def recent_alerts(self, limit: int) -> list[bytes]:
        """The newest ``limit`` alerts, newest first."""
        async with translated():
            raw = await self._redis.lrange(f"{self._prefix}:history:alerts", -limit, -1)
        return [_bytes(r) for r in reversed(raw)]


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
