"""The OTLP/HTTP exports of the last join window, kept where a restart finds them.

Keys (``P`` is the key prefix)::

    P:otlp:journal   stream: one entry per export answered, field ``e`` the export as
                     :func:`controller.core.telemetry.journal_entry` encodes it

An entry is added once the export's events were acknowledged, before the export is
answered; the script trims, in the same call, the entries older than the join window by
the server's clock (approximately: Redis trims whole nodes of the stream), and lets the
key expire two windows after the last export, so an idle journal holds nothing. A
restart reads the whole stream and keeps the entries of the last window by the time each
carries (:func:`controller.core.telemetry.within`). Redis holds about one window of
exports, as decoded (docs/otel.md, *A join cut by a restart*).
"""

from __future__ import annotations

from controller.adapters.redis.client import RedisClient, translated
from controller.settings import RedisSettings

PAGE = 64
"""Entries read by one command at a start."""
_APPEND = """
local now = redis.call('TIME')
local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
redis.call('XADD', KEYS[1], 'MINID', '~', math.max(oldest, 0), '*', 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 1
"""


class JoinJournal:
    """The journal of the OTLP/HTTP exports answered within the last join window."""

    def __init__(self, redis: RedisClient, *, settings: RedisSettings, window_ms: int) -> None:
        self._redis, self._window = redis, window_ms
        self._key = f"{settings.key_prefix}:otlp:journal"
        self._append = redis.register_script(_APPEND)

    async def append(self, entry: bytes) -> None:
        """Keep one export's entry, and drop those older than the window."""
        async with translated():
            await self._append(keys=[self._key], args=[entry, self._window])

    async def recent(self) -> list[bytes]:
        """Every entry the journal holds, oldest first (a few may be a window old)."""
        entries: list[bytes] = []
        start: bytes | str = "-"
        while True:  # a page at a time: a busy window is many exports, each one large
            async with translated():
                found = await self._redis.xrange(self._key, min=start, count=PAGE) or []
            for _, fields in found:
                entry = (fields or {}).get(b"e")
                if isinstance(entry, bytes):
                    entries.append(entry)
            if len(found) < PAGE:
                return entries
            last = found[-1][0]
            start = b"(" + last if isinstance(last, bytes) else f"({last}"
