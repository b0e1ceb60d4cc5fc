"""App-key commands: verified, applied to the book of keys in Redis, audited on the decisions topic.

The command intake hands each ``app_key`` command here. The order is the
rollouts service's (see :mod:`controller.daemon.rollouts.rollouts`): load the book,
decide (:func:`controller.core.trust.app_keys.decide`), save the change with its
decision in one compare-and-set, then publish the decision and wait for the
broker. A crash or a broker error after the save makes the intake retry the
command: the store answers the decision saved for its id, which is published
again under the same message id.

A command that fails authentication (unsigned, an unknown operator key, a bad
signature, stale) changes nothing and is not remembered (an unsigned command
must not claim an id a signed one may carry later): its rejection is
published only. The HTTP routes read the book through :class:`KeyBook`, held
in memory and reloaded in the background once ``max_age`` seconds old, so a
revocation is in force on every instance within about that, without a restart,
and a slow Redis never holds a request back once the book is loaded. A key the
book held does not know is looked up again in a book read since the request came
(:meth:`KeyBook.fresh`): a key is saved before its decision is published, so a key
is in force on every instance as soon as ``rolloutctl app-key create`` returns.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime

import orjson
import structlog

from controller.adapters.redis import AppKeyStore
from controller.core.common import ControllerError
from controller.core.release import Permission
from controller.core.trust import AppKey, AppKeyCommand, app_keys
from controller.core.wire import JsonObject
from controller.daemon.registries.keyring import Keyring, shared_refusal
from controller.ports import Outputs

MAX_CONFLICTS = 10
FRESH_INTERVAL_SECONDS = 0.1
"""The least time between two reads of the book for keys the held one does not know."""
FRESH_TIMEOUT_SECONDS = 1.0
"""The longest such a read may take; past it the book held answers (the key refused)."""
log = structlog.get_logger("controller.daemon.registries.app_keys")


class AppKeyCommands:
    """Applies app-key commands: the one writer of the book of keys."""

    def __init__(
        self,
        *,
        store: AppKeyStore,
        outputs: Outputs,
        keys: Keyring,
        decisions_topic: str,
        max_age_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._store, self._outputs, self._keys = store, outputs, keys
        self._topic, self._max_age, self._now = decisions_topic, max_age_seconds, clock

    async def apply(self, command: AppKeyCommand, raw: JsonObject) -> None:
        """Verify, decide, save and publish ``command``'s decision."""
        now = self._now()
        now_ms = int(now.timestamp() * 1000)
        refused = app_keys.refusal(
            command, raw, keys=self._keys, now=now, max_age_seconds=self._max_age
        ) or shared_refusal(self._keys, command.key_id, Permission.MANAGE_KEYS)
        if refused is None and command.environment is not None:
            unknown = self._keys.environments.unknown(command.environment)
            refused = None if unknown is None else f"environment: {unknown}"
        if refused is not None:
            log.warning("app_key_command_rejected", id=command.id, reason=refused)
            await self._publish(
                orjson.dumps(app_keys.audit(command, refused, now_ms=now_ms, refused=refused))
            )
            return
        for _ in range(MAX_CONFLICTS):
            book = await self._store.load()
            result = app_keys.decide(book.keys, command, now_ms=now_ms)
            decision = orjson.dumps(app_keys.audit(command, result, now_ms=now_ms))
            key = result if isinstance(result, AppKey) else None
            saved = await self._store.save(
                command_id=command.id,
                rev=book.rev,
                key=key,
                decision=decision,
                now_ms=now_ms,
                # As long as the command can be fresh: a replay after it is refused as stale.
                keep_ms=int(2 * self._max_age * 1000),
            )
            if saved.outcome == "conflict":
                continue
            log.info(
                "app_key_command",
                id=command.id,
                action=command.action,
                target=command.target,
                outcome=saved.outcome,
                refused=result if isinstance(result, str) else None,
            )
            await self._publish(saved.decision)
            return
        raise ControllerError(f"app keys: could not save after {MAX_CONFLICTS} conflicts")

    async def _publish(self, decision: bytes) -> None:
        flag = str(orjson.loads(decision).get("flag", app_keys.AUDIT_FLAG_PREFIX))
        await self._outputs.publish([(self._topic, flag, decision)])


class KeyBook:
    """The keys as requests look them up (by the secret's SHA-256): the first request waits
    for the first load; once ``max_age`` seconds old the book is reloaded in the background
    while requests go on from the one held, as OFREP's snapshot of the flag states is."""

    def __init__(
        self,
        store: AppKeyStore,
        *,
        max_age: float = 1.0,
        fresh_interval: float = FRESH_INTERVAL_SECONDS,
        fresh_timeout: float = FRESH_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store, self._max_age, self._clock = store, max_age, clock
        self._fresh_interval, self._fresh_timeout = fresh_interval, fresh_timeout
        self._keys: Mapping[str, AppKey] | None = None
        self._loaded_at = 0.0
        self._read_from = -math.inf
        """When the read of the book held began: it holds every key stored before."""
        self._first = asyncio.Lock()
        self._fresh_lock = asyncio.Lock()
        self._reload: asyncio.Task[None] | None = None

    async def get(self) -> Mapping[str, AppKey]:
        """The book held; the first call loads it (a store error: the route answers 503)."""
        if self._keys is None:
            async with self._first:
                if self._keys is None:
                    await self._refresh()
            assert self._keys is not None
        elif self._clock() - self._loaded_at >= self._max_age and self._reload is None:
            self._reload = asyncio.create_task(self._background(), name="app-key-book")
        return self._keys

    async def fresh(self) -> Mapping[str, AppKey]:
        """A book read since this call began: it holds every key stored before, so a key
        whose decision was published is in force at once. For a key the held book does not
        know; reads are shared and at most one per ``fresh_interval`` (a flood of guessed
        keys costs Redis ten reads a second), each bounded by ``fresh_timeout``, past
        which (or on a store error) the book held answers."""
        asked = self._clock()
        async with self._fresh_lock:
            if self._keys is not None and self._read_from >= asked:
                return self._keys  # another caller's read began after this one asked
            wait = self._read_from + self._fresh_interval - self._clock()
            try:
                async with asyncio.timeout(self._fresh_timeout + max(0.0, wait)):
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await self._refresh()
            except (TimeoutError, ControllerError) as exc:
                log.warning("app_keys_fresh_read_failed", error=repr(exc)[:300])
        return await self.get()

    async def listing(self) -> list[AppKey]:
        """Every key as stored now (not the held book): what ``GET /app-keys`` shows."""
        return list((await self._store.load()).keys.values())

    async def _refresh(self) -> None:
        began = self._clock()
        book = await self._store.load()
        if began >= self._read_from:  # never a read begun earlier over a later one
            self._keys, self._loaded_at = app_keys.by_digest(book.keys.values()), self._clock()
            self._read_from = began

    async def _background(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:
            # Requests go on with the keys held; the next one past max_age tries again.
            self._loaded_at = self._clock()
            log.warning("app_keys_reload_failed", error=repr(exc)[:300])
        finally:
            self._reload = None
