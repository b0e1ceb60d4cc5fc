"""App keys in Redis: the book of keys, and the commands that changed it.

Keys (``P`` is the key prefix; one hash tag, so every script touches one slot)::

    {P:app-keys}:book   hash: key id -> the key's record (JSON; the secret's SHA-256,
                        never the secret)
    {P:app-keys}:done   hash: command id -> the decision published for it
    {P:app-keys}:when   sorted set: command id, scored by when it was decided (ms)
    {P:app-keys}:rev    integer, bumped by every change

A command is saved with its decision in one script that refuses a stale
revision (another instance changed the book since it was read: decide
again) and, for a command id already decided, answers the decision then
saved, which is published again: consumers deduplicate it by its id.

The record of decided ids is bounded by time: each save forgets (at most
:data:`TRIM_PER_SAVE` of) the ids decided more than ``keep_ms`` before it.
The caller keeps them for as long as a command can still be fresh (twice
``engine.command_max_age_seconds``: a command may be dated that far ahead),
so an id forgotten belongs to a command refused as stale before the store
is asked, and a replay is refused either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from controller.adapters.redis.client import RedisClient, translated
from controller.core.trust import AppKey
from controller.settings import RedisSettings

log = structlog.get_logger("controller.adapters.redis.app_keys")

TRIM_PER_SAVE = 256
"""The most decided ids one save forgets, so that a save stays short."""

# KEYS: book, done, rev, when
# ARGV: command id, revision read, key id, record, decision, now (ms), forget before (ms), trim
_SAVE = """
local done = redis.call('HGET', KEYS[2], ARGV[1])
if done then return {'done', done} end
local rev = redis.call('GET', KEYS[3]) or '0'
if rev ~= ARGV[2] then return {'conflict', ''} end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[7], 'LIMIT', 0, ARGV[8])
if #old > 0 then
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('ZREM', KEYS[4], unpack(old))
end
redis.call('INCR', KEYS[3])
return {'saved', ARGV[5]}
"""


@dataclass(frozen=True, slots=True)
class Book:
    """Every key, by id, at a revision."""

    rev: int
    keys: dict[str, AppKey]


@dataclass(frozen=True, slots=True)
class Saved:
    """What became of a save: ``saved``, ``done`` (decided before) or ``conflict``; and the
    decision to publish (the one saved now or before)."""

    outcome: str
    decision: bytes


class AppKeyStore:
    """Reads the book of app keys and saves each command's change with its decision."""

    def __init__(self, redis: RedisClient, *, settings: RedisSettings) -> None:
        self._redis = redis
        tag = f"{{{settings.key_prefix}:app-keys}}"
        self._book, self._done, self._rev = f"{tag}:book", f"{tag}:done", f"{tag}:rev"
        self._when = f"{tag}:when"
        self._save = redis.register_script(_SAVE)

    async def load(self) -> Book:
        """Every key and the book's revision, in one round trip."""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._rev)
            pipe.hgetall(self._book)
            rev, records = await pipe.execute()
        keys: dict[str, AppKey] = {}
        for key_id, record in (records or {}).items():
            try:
                key = AppKey.model_validate_json(record)
            except ValidationError:
                # A record written by hand or by a later version: not a key this one serves.
                log.warning("app_key_unreadable", key_id=_text(key_id)[:64])
                continue
            keys[key.id] = key
        return Book(int(rev or 0), keys)

    async def save(
        self,
        *,
        command_id: str,
        rev: int,
        key: AppKey | None,
        decision: bytes,
        now_ms: int,
        keep_ms: int,
    ) -> Saved:
        """Save ``key`` (None: a refusal changes no key) and ``decision`` for ``command_id``
        if the book is still at ``rev``; forget the ids decided over ``keep_ms`` before
        ``now_ms``."""
        record = key.model_dump_json() if key is not None else ""
        args: list[str | bytes] = [
            command_id,
            str(rev),
            key.id if key is not None else "",
            record,
            decision,
            str(now_ms),
            str(now_ms - keep_ms),
            str(TRIM_PER_SAVE),
        ]
        keys = [self._book, self._done, self._rev, self._when]
        async with translated():
            outcome, saved = await self._save(keys=keys, args=args)
        text = _text(outcome)
        return Saved(text, saved if isinstance(saved, bytes) else str(saved).encode())


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
