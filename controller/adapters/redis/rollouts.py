"""Rollout state in Redis: one value per flag, compare-and-set, with an outbox.

Keys (``P`` is the key prefix)::

    {P:flag:<flag>}:state    hash: rev (compare-and-set counter), doc (Rollout JSON)
    {P:flag:<flag>}:outbox   list: messages saved with the state, not yet published
    {P:flag:<flag>}:quarantine  list: outbox messages that can never be published (last 100)
    P:rollouts               set: flags that have a rollout
    P:claim:<id>             string with a TTL: a webhook delivery already accepted
    {P:flag:<flag>}:commands sorted set: ids of applied commands, by time (trimmed)
    {P:flag:<flag>}:deliveries sorted set: the records (topic:partition:offset) they
                             were read from, by time (trimmed with the ids)
    {P:flag:<flag>}:draining string with a TTL: the instance draining the outbox now
    {P:flag:<flag>}:synced   string with a TTL: the marker a drain waits for replicas on
    {P:flag:<flag>}:backend  string: what the flag-backend sync applied last (JSON), see
                             core.serving.Applied

The state, its outbox and the flag's applied command ids share a hash tag, so
one Lua script saves a new state, the messages it implies and the id of the
command that caused it, atomically: a crash after the save republishes the
messages on restart (at-least-once; consumers deduplicate by message id), and
a redelivered or retried command is recognised as already applied. The record
a command was read from is kept beside its id, so the same record read again
(a new owner, a paused instance resuming) is told from the same command sent
again (a replay).

Each outbox entry carries an id. A drain confirms what the broker acknowledged
by those ids (the head of the list is dropped only while it is one of them),
never by a count, so a message appended meanwhile is never dropped; and one
drain at a time holds the flag's ``draining`` lease, so two instances never
publish one flag's messages interleaved (an older flag state after a newer).

Before a drain publishes, :meth:`RolloutStore.replicated` waits until a
replica of the flag's master has everything the master acknowledged (see
:mod:`.replicas`), so a failover cannot undo a state whose messages went out.

A state is decoded once per stored document: a flag's last decoded rollout is
kept with the bytes it came from, and a load that finds the same bytes (most
do: a gate that holds saves nothing) takes it instead of validating the JSON
again. Rollouts are immutable, so sharing one between loads is safe.

Next to the flag's state, :class:`AppliedStore` keeps what the flag-backend sync
applied last. Only the sync of the instance that owns the flag writes it. A record that
cannot be read counts as none: the sync then compares with nothing, writes what the
rollout wants and records it afresh.

A stored state or outbox entry that cannot be read is reported, not raised as
a crash: :meth:`RolloutStore.load` raises a permanent :class:`StoreError`
naming the flag, and :meth:`RolloutStore.pending` hands an unreadable entry
back with an empty topic, so the engine can quarantine it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import orjson
from pydantic import ValidationError

from controller.adapters.redis.client import RedisClient, translated
from controller.adapters.redis.replicas import ReplicaWait
from controller.core.common import StoreError
from controller.core.rollouts import Rollout
from controller.core.serving import Applied
from controller.ports import CommandSeen, Loaded, OutboxMessage, SaveOutcome, StateWrite
from controller.settings import RedisSettings

# KEYS: state, outbox, applied commands (zset id -> ms), their records (zset record -> ms)
# ARGV: expected rev (-1: any, only to queue messages), state JSON ('' keeps it),
#       command id ('' none), now ms, keep ms, the command's record ('' none),
#       outbox messages...
# Returns {1, rev} saved, {0, rev} revision conflict, {-1, rev} command already applied.
# Key types are checked first: Redis does not roll back a script that fails part-way.
_SAVE = """
for i, want in ipairs({'hash', 'list', 'zset', 'zset'}) do
  local found = redis.call('TYPE', KEYS[i])['ok']
  if found ~= 'none' and found ~= want then
    return redis.error_reply(KEYS[i] .. ' holds a ' .. found .. ', not a ' .. want)
  end
end
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if ARGV[3] ~= '' and redis.call('ZSCORE', KEYS[3], ARGV[3]) then return {-1, rev} end
if ARGV[1] ~= '-1' and rev ~= tonumber(ARGV[1]) then return {0, rev} end
if ARGV[2] ~= '' then
  rev = rev + 1
  redis.call('HSET', KEYS[1], 'rev', rev, 'doc', ARGV[2])
end
if ARGV[3] ~= '' then
  local now = tonumber(ARGV[4])
  local forgotten = now - tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', forgotten)
  redis.call('ZADD', KEYS[3], now, ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', forgotten)
  if ARGV[6] ~= '' then redis.call('ZADD', KEYS[4], now, ARGV[6]) end
end
for i = 7, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
return {1, rev}
"""

DECODED_KEEP = 10_000
"""Flags whose last decoded rollout is kept (the oldest kept is dropped beyond)."""

# KEYS: outbox, quarantine   ARGV: reason, how many quarantined entries to keep
# Moves the oldest outbox entry to the quarantine with its reason; returns it.
_QUARANTINE = """
local entry = redis.call('LPOP', KEYS[1])
if not entry then return false end
redis.call('RPUSH', KEYS[2], cjson.encode({reason = ARGV[1], entry = entry}))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
return entry
"""
QUARANTINE_KEEP = 100

# KEYS: outbox   ARGV: ids of entries the broker acknowledged
# Drops the head of the outbox while its id is one of them; returns how many it dropped.
PUBLISHED_SCRIPT = """
local confirmed = {}
for i = 1, #ARGV do confirmed[ARGV[i]] = true end
local dropped = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local ok, entry = pcall(cjson.decode, head)
  if not ok or type(entry) ~= 'table' or not confirmed[tostring(entry['id'] or '')] then break end
  redis.call('LPOP', KEYS[1])
  dropped = dropped + 1
end
return dropped
"""

# KEYS: lease   ARGV: token, ttl ms. Takes or renews the lease; 1 if this token holds it.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease   ARGV: token. Releases the lease if this token still holds it.
_END = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RolloutStore:
    """Rollout state per flag, saved with compare-and-set together with its outbox."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings) -> None:
        self._redis = client
        self._prefix = settings.key_prefix
        self._save = client.register_script(_SAVE)
        self._quarantine = client.register_script(_QUARANTINE)
        self._published = client.register_script(PUBLISHED_SCRIPT)
        self._hold = client.register_script(_HOLD)
        self._end = client.register_script(_END)
        self._replicas = ReplicaWait(client, settings=settings)
        self._decoded: dict[str, tuple[bytes | str, Rollout]] = {}
        """Per flag, the stored document last decoded and its rollout."""

    def _key(self, flag: str, part: str) -> str:
        return f"{{{self._prefix}:flag:{flag}}}:{part}"

    async def load(self, flag: str) -> Loaded:
        async with translated():
            rev, doc = await self._redis.hmget(self._key(flag, "state"), ["rev", "doc"])
        return self._loaded(flag, rev, doc)

    async def load_many(self, flags: Sequence[str]) -> list[Loaded | StoreError]:
        """Each flag's state in one round trip per node; an unreadable one as its error."""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for flag in flags:
                pipe.hmget(self._key(flag, "state"), ["rev", "doc"])
            replies = await pipe.execute()
        found: list[Loaded | StoreError] = []
        for flag, (rev, doc) in zip(flags, replies, strict=True):
            try:
                found.append(self._loaded(flag, rev, doc))
            except StoreError as exc:
                found.append(exc)
        return found

    async def load_all(self) -> dict[str, Loaded | StoreError]:
        """Every flag with its state, in flag order, in two round trips however many there
        are: the set of flags, then every state in one pipeline (on a cluster, one per node,
        side by side: a flag's keys are in its own slot, so no script could read them all)."""
        flags = sorted(await self.flags())
        return dict(zip(flags, await self.load_many(flags), strict=True))

    async def save(self, flag: str, write: StateWrite) -> SaveOutcome:
        """Apply ``write`` to ``flag``'s state and outbox, iff still at its revision."""
        doc = write.rollout.model_dump_json() if write.rollout is not None else ""
        args: list[bytes | str | int] = [
            write.rev,
            doc,
            write.command_id or "",
            write.now_ms,
            write.keep_ms,
            write.delivery,
        ]
        args += [m.encode() for m in write.outbox]
        parts = ("state", "outbox", "commands", "deliveries")
        keys = [self._key(flag, part) for part in parts]
        async with translated():
            code, _ = await self._save(keys=keys, args=args)
            if code == 1 and write.rollout is not None:
                await self._redis.sadd(f"{self._prefix}:rollouts", flag)
        return SaveOutcome(int(code))

    async def seen(self, flag: str, command_id: str, delivery: str = "") -> CommandSeen:
        """Whether ``command_id`` was already applied to ``flag`` (within the kept window),
        and if so whether from ``delivery``, the record it was read from now."""
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            pipe.zscore(self._key(flag, "commands"), command_id)
            pipe.zscore(self._key(flag, "deliveries"), delivery)
            applied, delivered = await pipe.execute()
        return CommandSeen.of(applied=applied is not None, from_this_record=delivered is not None)

    async def pending(self, flag: str) -> list[OutboxMessage]:
        """Messages saved for ``flag`` and not yet confirmed published, oldest first."""
        async with translated():
            raw = await self._redis.lrange(self._key(flag, "outbox"), 0, -1)
        return [OutboxMessage.decode(r) for r in raw]

    async def published(self, flag: str, ids: Sequence[str]) -> int:
        """Drop the messages ``ids`` from the head of the outbox: the broker has them.

        Returns how many were dropped (fewer when another drain confirmed some first).
        """
        if not ids:
            return 0
        async with translated():
            dropped = await self._published(keys=[self._key(flag, "outbox")], args=list(ids))
        return int(dropped)

    async def replicated(self, flag: str) -> None:
        """Return once replicas have ``flag``'s state and outbox as its master holds them.

        Raises :class:`StoreUnavailable` (retriable) when they do not within the timeout.
        """
        await self._replicas.replicated(self._key(flag, "synced"))

    async def hold_drain(self, flag: str, token: str, *, ttl_ms: int) -> bool:
        """Take or renew ``flag``'s drain lease for ``ttl_ms``; False if another holds it."""
        async with translated():
            held = await self._hold(keys=[self._key(flag, "draining")], args=[token, ttl_ms])
        return bool(held)

    async def end_drain(self, flag: str, token: str) -> None:
        """Give the drain lease back, if ``token`` still holds it."""
        async with translated():
            await self._end(keys=[self._key(flag, "draining")], args=[token])

    async def quarantine(self, flag: str, reason: str) -> OutboxMessage | None:
        """Move ``flag``'s oldest outbox message to its quarantine, with ``reason``."""
        keys = [self._key(flag, "outbox"), self._key(flag, "quarantine")]
        async with translated():
            entry = await self._quarantine(keys=keys, args=[reason[:500], QUARANTINE_KEEP])
        return None if entry is None else OutboxMessage.decode(entry)

    async def quarantined(self, flag: str) -> list[dict[str, str]]:
        """The quarantined messages of ``flag`` with their reasons, oldest first."""
        async with translated():
            raw = await self._redis.lrange(self._key(flag, "quarantine"), 0, -1)
        return [orjson.loads(r) for r in raw]

    async def flags(self) -> set[str]:
        """Every flag that has (or had) a rollout."""
        async with translated():
            members = await self._redis.smembers(f"{self._prefix}:rollouts")
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def list_again(self, flags: Collection[str]) -> None:
        """List ``flags`` again among those with a rollout: their states kept, the set lost
        (on a cluster, the data of the master it lives on)."""
        if flags:
            async with translated():
                await self._redis.sadd(f"{self._prefix}:rollouts", *flags)

    async def claim(self, claim_id: str, *, ttl_s: int) -> bool:
        """Record ``claim_id`` for ``ttl_s`` seconds; False if it was already recorded."""
        async with translated():
            return bool(
                await self._redis.set(f"{self._prefix}:claim:{claim_id}", 1, nx=True, ex=ttl_s)
            )

    async def release(self, claim_id: str) -> None:
        """Forget ``claim_id``, so a retried delivery is accepted again."""
        async with translated():
            await self._redis.delete(f"{self._prefix}:claim:{claim_id}")

    def _loaded(self, flag: str, rev: bytes | str | None, doc: bytes | str | None) -> Loaded:
        """A stored state as :class:`Loaded`, decoded unless ``doc`` is the one decoded last
        for ``flag``; :class:`StoreError` when it cannot be read."""
        if doc is None:
            return Loaded(0, None)
        kept = self._decoded.get(flag)
        try:
            revision = int(rev or 0)
            if kept is not None and kept[0] == doc:
                return Loaded(revision, kept[1])
            rollout = Rollout.model_validate_json(doc)
        except (ValidationError, ValueError) as exc:
            why = f"{flag}: the stored rollout state is unreadable: {exc}"
            raise StoreError(why[:500]) from exc
        self._decoded.pop(flag, None)
        if len(self._decoded) >= DECODED_KEEP:
            del self._decoded[next(iter(self._decoded))]
        self._decoded[flag] = (doc, rollout)
        return Loaded(revision, rollout)


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
