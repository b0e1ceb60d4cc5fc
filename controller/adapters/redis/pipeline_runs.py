"""Release pipeline runs in Redis: one record per run, compare-and-set, with an outbox.

Keys (``P`` is the key prefix)::

    {P:run:<run>}:state      hash: rev (compare-and-set counter), doc (the run's JSON)
    {P:run:<run>}:outbox     list: decisions and alerts saved with the state, not yet published
    P:pipeline-runs:<flag>   sorted set: the flag's runs, by the time each started
    P:pipeline-runs          set: the runs not over, or whose outbox is not yet published

A run's state and its outbox share a hash tag, so one script saves a new
state with the decisions it implies, atomically, as a rollout's are saved: a
crash after the save republishes them at start-up, and a crash before it
leaves the state as it was, so the event is decided again, the same way, on
the state stored before. A run is indexed before its first save, so a saved
run is always found; an index entry whose state was never saved is skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pydantic import ValidationError

from controller.adapters.redis.client import RedisClient, translated
from controller.adapters.redis.rollouts import PUBLISHED_SCRIPT
from controller.core.common import StoreError
from controller.core.release import PipelineState
from controller.ports import OutboxMessage, RunLoaded
from controller.settings import RedisSettings

# KEYS: state, outbox   ARGV: expected rev, state JSON, outbox messages...
# Returns {1, rev} saved, {0, rev} revision conflict.
_SAVE = """
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return {0, rev} end
rev = rev + 1
redis.call('HSET', KEYS[1], 'rev', rev, 'doc', ARGV[2])
for i = 3, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
return {1, rev}
"""


class PipelineRunStore:
    """Pipeline runs, each saved with compare-and-set together with its outbox."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings) -> None:
        self._redis = client
        self._prefix = settings.key_prefix
        self._save = client.register_script(_SAVE)
        self._published = client.register_script(PUBLISHED_SCRIPT)  # the rollouts' outbox drop

    def _key(self, run_id: str, part: str) -> str:
        return f"{{{self._prefix}:run:{run_id}}}:{part}"

    @property
    def _active(self) -> str:
        return f"{self._prefix}:pipeline-runs"

    async def index(self, flag: str, run_id: str, at_ms: int) -> None:
        """List ``run_id`` among ``flag``'s runs and the running ones (before its first save)."""
        async with translated():
            await self._redis.zadd(f"{self._active}:{flag}", {run_id: at_ms}, nx=True)
            await self._redis.sadd(self._active, run_id)

    async def load(self, run_id: str) -> RunLoaded:
        async with translated():
            rev, doc = await self._redis.hmget(self._key(run_id, "state"), ["rev", "doc"])
        if doc is None:
            return RunLoaded(0, None)
        try:
            return RunLoaded(int(rev or 0), PipelineState.model_validate_json(doc))
        except (ValidationError, ValueError) as exc:
            raise StoreError(f"pipeline run {run_id}: unreadable: {exc}"[:500]) from exc

    async def save(
        self, run_id: str, rev: int, state: PipelineState, outbox: Sequence[OutboxMessage]
    ) -> bool:
        """Save ``state`` and its messages iff the run is still at ``rev``; False on a conflict."""
        keys = [self._key(run_id, "state"), self._key(run_id, "outbox")]
        args: list[bytes | str | int] = [rev, state.model_dump_json()]
        args += [m.encode() for m in outbox]
        async with translated():
            code, _ = await self._save(keys=keys, args=args)
        return bool(code == 1)

    async def finished(self, run_id: str) -> None:
        """Take a run that is over, its outbox published, off the running ones."""
        async with translated():
            await self._redis.srem(self._active, run_id)

    async def runs_of(self, flag: str) -> list[str]:
        """The flag's runs, the newest first."""
        async with translated():
            found = await self._redis.zrevrange(f"{self._active}:{flag}", 0, -1)
        return [_text(r) for r in found if isinstance(r, bytes | str)]

    async def with_runs(self, flags: Collection[str]) -> set[str]:
        """Which of ``flags`` have a run, in one round trip."""
        wanted = list(flags)
        if not wanted:
            return set()
        async with translated(), self._redis.pipeline(transaction=False) as pipe:
            for flag in wanted:
                pipe.exists(f"{self._active}:{flag}")
            found = await pipe.execute()
        return {flag for flag, n in zip(wanted, found, strict=True) if n}

    async def running(self) -> set[str]:
        """The runs not known to be over."""
        async with translated():
            members = await self._redis.smembers(self._active)
        return {_text(m) for m in members}

    async def pending(self, run_id: str) -> list[OutboxMessage]:
        async with translated():
            raw = await self._redis.lrange(self._key(run_id, "outbox"), 0, -1)
        return [OutboxMessage.decode(r) for r in raw]

    async def published(self, run_id: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with translated():
            dropped = await self._published(keys=[self._key(run_id, "outbox")], args=list(ids))
        return int(dropped)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
