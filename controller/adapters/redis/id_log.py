"""The event ids one events partition counted within its window, kept by its owner.

The partition's list ``{P:T:n}:ids`` holds one entry per applied batch,
``"<when, ms> <how many> "`` then the batch's ids in msgpack, written by the
flush script in the same atomic step as the counts and the offset. Only the
fenced owner of a partition writes it, so the owner can hold the same ids in
memory and check a batch against them before it is sent: Redis then stores
a batch's ids as one string instead of one sorted-set member per id, and
checks none of them (docs/architecture.md, "Event ids").

The owner's copy forgets exactly as the script does: a batch is dropped once
it was counted before the window, or once the newer batches alone hold at
least the most ids the window keeps. Whole batches are kept, so at least the
promised ids are remembered, never fewer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from controller.adapters.redis.client import RedisClient
from controller.settings.groups import DEDUPE_MAX_IDS, DEDUPE_SECONDS


@dataclass(frozen=True, slots=True)
class IdWindow:
    """How long, and for how many ids, a partition remembers the event ids it counted."""

    seconds: int = DEDUPE_SECONDS
    max_ids: int = DEDUPE_MAX_IDS


# An events partition's ids in the sorted set that held them before the list: they become one
# list entry, dated by the newest of them, so every one is remembered at least as long as before.
CONVERT_SORTED_SET = """
if redis.call('TYPE', KEYS[2])['ok'] ~= 'zset' then return 0 end
local members = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local ids, newest = {}, 0
for i = 1, #members, 2 do
  ids[#ids + 1] = members[i]
  newest = math.max(newest, tonumber(members[i + 1]))
end
redis.call('DEL', KEYS[2])
if #ids == 0 then return 0 end
local head = string.format('%.0f', newest) .. ' ' .. #ids .. ' '
redis.call('RPUSH', KEYS[2], head .. cmsgpack.pack(ids))
redis.call('HSET', KEYS[1], 'idn', #ids)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return #ids
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[str]).decode


def entry(now_ms: int, ids: list[str]) -> bytes:
    """The list entry of one batch's ids, as the flush script pushes it."""
    return b"%d %d " % (now_ms, len(ids)) + _encode(ids)


def parse(raw: bytes) -> tuple[int, list[str]] | None:
    """``(when, ids)`` of one list entry, or None for one this store did not write."""
    parts = raw.split(b" ", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    try:
        return int(parts[0]), _decode(parts[2])
    except msgspec.DecodeError:
        return None


class IdLog:
    """One partition's counted ids within the window, batch by batch, oldest first."""

    def __init__(self, *, window_ms: int, max_ids: int) -> None:
        self._window_ms, self._max_ids = window_ms, max_ids
        self._batches: deque[tuple[int, list[str]]] = deque()
        self._ids: set[str] = set()
        # The sum of the batches' sizes, as the script keeps it: each batch is checked
        # against the others before it is applied, so no id is in two of them.
        self._total = 0

    @classmethod
    def loaded(cls, entries: Iterable[bytes], *, window_ms: int, max_ids: int) -> IdLog:
        """The copy of a partition's list, read from Redis (entries it cannot read skipped)."""
        log = cls(window_ms=window_ms, max_ids=max_ids)
        for raw in entries:
            batch = parse(raw)
            if batch is not None:
                log._push(*batch)
        return log

    def __len__(self) -> int:
        return len(self._ids)

    def counted(self, ids: Iterable[str], now_ms: int) -> frozenset[str]:
        """Those of ``ids`` counted within the window at ``now_ms``."""
        self.forget(now_ms)
        return frozenset(self._ids.intersection(ids))

    def add(self, now_ms: int, ids: list[str]) -> None:
        """A batch applied at ``now_ms`` counted ``ids`` (none of them held)."""
        self._push(now_ms, ids)
        self.forget(now_ms)

    def forget(self, now_ms: int) -> None:
        """Drop the batches the flush script drops at ``now_ms``."""
        since, batches = now_ms - self._window_ms, self._batches
        while batches:
            when, ids = batches[0]
            if when >= since and self._total - len(ids) < self._max_ids:
                return
            batches.popleft()
            self._total -= len(ids)
            self._ids.difference_update(ids)

    def _push(self, when: int, ids: list[str]) -> None:
        self._batches.append((when, ids))
        self._total += len(ids)
        self._ids.update(ids)


async def read_log(
    client: RedisClient, convert: AsyncScript, keys: list[str], window: IdWindow
) -> IdLog:
    """A partition's list of counted ids (``keys``: its meta hash, its list), read into
    memory after ``convert`` (:data:`CONVERT_SORTED_SET`) made a sorted set of them one;
    empty if it is no list: the flush script then refuses the partition's batches, naming
    the key."""
    await convert(keys=keys, args=[window.seconds * 1000])
    try:
        entries = [e for e in await client.lrange(keys[1], 0, -1) if isinstance(e, bytes)]
    except ResponseError:
        entries = []
    return IdLog.loaded(entries, window_ms=window.seconds * 1000, max_ids=window.max_ids)
