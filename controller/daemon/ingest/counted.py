"""When each owned partition was last counted through, for the gates' horizon.

A partition is *counted through* at a time when everything the broker held on
it as of the last fetch is counted: its stored offset reached that fetch's high
watermark. The owner records the time every commit interval for the partitions
where that holds, held partitions aside, so a gate on any instance can tell a
partition whose evidence is behind the stage's horizon
(:mod:`controller.core.rollouts.completeness`). The write is advice for the
gates: one that fails is logged and tried again at the next interval, and
ingest goes on. A partition is judged once its owner first recorded it; a
topic that shrank forgets the partitions it no longer has.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

import structlog

from controller.adapters.redis import CountedTimes, RedisClient
from controller.core.common import ControllerError
from controller.daemon.ingest.partitions import Partitions
from controller.ports import EventSource
from controller.settings import Settings

log = structlog.get_logger("controller.daemon.ingest.ingest")


class CountedStore(Protocol):
    """Where the times are kept (in Redis: :mod:`controller.adapters.redis.ingest_progress`)."""

    async def record(
        self,
        at: datetime,
        caught: list[int],
        *,
        partitions: int | None = None,
        owned: Iterable[int] = (),
        owner: str | None = None,
    ) -> None: ...


def _no_clock() -> datetime:
    return datetime.now(UTC)


def instance_name() -> str:
    """This instance as owners are named: its host (a pod's name) and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class CountedThrough:
    """Records the owned partitions counted through, each commit interval."""

    def __init__(
        self,
        store: CountedStore | None,
        *,
        clock: Callable[[], datetime] = _no_clock,
        owner: str | None = None,
    ) -> None:
        """``clock``: the engine's, so the gates' horizon and these times agree; ``owner``:
        this instance's name, recorded for the partitions it owns; without ``store``
        nothing is recorded."""
        self._store, self._now, self._owner = store, clock, owner

    async def record(self, parts: Partitions, source: EventSource) -> list[int]:
        """Record the owned partitions whose stored offset reached their last fetch's high
        watermark (a partition not fetched since its claim waits for its first fetch)."""
        if self._store is None:
            return []
        caught = [
            p
            for p, owned in sorted(parts.owned.items())
            if caught_up(owned.offset, source.highwater(p))
        ]
        try:
            await self._store.record(
                self._now(),
                caught,
                partitions=source.partition_count(),
                owned=sorted(parts.owned),
                owner=self._owner,
            )
        except ControllerError as exc:
            log.warning("counted_through_not_recorded", error=str(exc)[:300])
        return caught


def caught_up(stored: int | None, highwater: int | None) -> bool:
    """Whether a partition at ``stored`` (None: nothing flushed) has counted up to
    ``highwater`` (None: not fetched yet, so unknown)."""
    if highwater is None:
        return False
    return (stored or 0) >= highwater


def counted_through(
    client: RedisClient, settings: Settings, topic: str, clock: Callable[[], datetime]
) -> CountedThrough:
    """The recorder of ``topic``'s partitions in Redis, on the engine's ``clock``."""
    store = CountedTimes(client, settings=settings.redis, topic=topic)
    return CountedThrough(store, clock=clock, owner=instance_name())
