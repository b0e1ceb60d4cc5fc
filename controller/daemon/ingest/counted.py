"""When each owned partition was last counted through, for the gates' horizon.

A partition is *counted through* at a time when everything the broker held on
it then is counted. Every commit interval the owner notes each owned
partition's high watermark as of its last fetch, with the time, and records
for each partition the latest noted time whose high watermark its stored
offset has reached. So a partition whose ingest runs steadily a moment behind
the log's end (records fetched while a flush is in flight, or folded on for a
later flush) is counted through up to a moment ago, not never: only the
noted watermarks its flushes have not reached yet are waited for. Held
partitions aside, a gate on any instance can tell a partition whose evidence
is behind the stage's horizon (:mod:`controller.core.rollouts.completeness`).
The write is advice for the gates: one that fails is logged and tried again at
the next interval, and ingest goes on. A partition is judged once its owner
first recorded it; a topic that shrank forgets the partitions it no longer has.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol

import structlog

from controller.adapters.redis import CountedTimes, RedisClient
from controller.core.common import ControllerError
from controller.daemon.ingest.partitions import Partitions
from controller.ports import EventSource
from controller.settings import Settings

log = structlog.get_logger("controller.daemon.ingest.ingest")

NOTED = 64
"""The most high watermarks noted per partition; past it every other one is dropped, so
the notes span the whole wait at a coarser step (a time credited can only be earlier)."""


class CountedStore(Protocol):
    """Where the times are kept (in Redis: :mod:`controller.adapters.redis.ingest_progress`)."""

    async def record(
        self,
        caught: Mapping[int, datetime],
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
    """Records when the owned partitions were counted through, each commit interval."""

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
        self._noted: dict[int, list[tuple[datetime, int]]] = {}
        """Per owned partition, its high watermarks noted, oldest first, with their time."""

    async def record(self, parts: Partitions, source: EventSource) -> dict[int, datetime]:
        """Note each owned partition's last fetched high watermark, and record the owned
        partitions counted through, each at the latest time noted whose watermark its
        stored offset reached (a partition not fetched since its claim waits for its first
        fetch). Returns what was recorded."""
        if self._store is None:
            return {}
        now = self._now()
        stored = {p: owned.offset for p, owned in parts.owned.items()}
        caught = self.note(now, stored, {p: source.highwater(p) for p in stored})
        try:
            await self._store.record(
                caught,
                partitions=source.partition_count(),
                owned=sorted(parts.owned),
                owner=self._owner,
            )
        except ControllerError as exc:
            log.warning("counted_through_not_recorded", error=str(exc)[:300])
        return caught

    def note(
        self,
        now: datetime,
        stored: Mapping[int, int | None],
        highwaters: Mapping[int, int | None],
    ) -> dict[int, datetime]:
        """Note ``highwaters`` at ``now``; per partition in ``stored`` (owned, with its stored
        offset), the latest time noted whose watermark it reached, if any."""
        for gone in self._noted.keys() - stored.keys():
            del self._noted[gone]
        caught: dict[int, datetime] = {}
        for p, offset in sorted(stored.items()):
            noted = self._noted.setdefault(p, [])
            highwater = highwaters.get(p)
            if highwater is not None and (not noted or noted[-1][1] != highwater):
                noted.append((now, highwater))
            elif highwater is not None:  # the same end: it stands for now too
                noted[-1] = (now, highwater)
            reached = [i for i, (_, end) in enumerate(noted) if caught_up(offset, end)]
            if reached:
                last = reached[-1]
                caught[p] = noted[last][0]
                del noted[:last]  # the earlier notes can credit nothing later
            if len(noted) > NOTED:
                kept = noted[::2]
                noted[:] = kept if kept[-1] is noted[-1] else [*kept, noted[-1]]
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
