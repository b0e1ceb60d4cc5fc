"""Waiting until a replica has what the master acknowledged (Redis ``WAIT``).

Redis replicates asynchronously: a master can acknowledge a write and die
before any replica has it, and the replica promoted in its place never saw
it. For rollout states that matters once their messages are published: a
decision published from a state the failover then loses would be decided
again, with a new id. So before an outbox is published, :meth:`ReplicaWait.replicated`
reads the master's replication offset, writes a marker and waits (``WAIT``),
all on one connection, for replicas to acknowledge it: the replication stream
is ordered, so that covers every earlier write of the master, the state and
its outbox included. The master is then asked which of its replicas have
reached that offset (``INFO replication``): same master (replication id),
enough replicas, or the wait failed, whatever a retried ``WAIT`` answered.

How many replicas: ``redis.wait_replicas``; unset, one when the master has had
a replica acknowledging within the last ``wait_replica_max_lag_seconds`` (read
from ``INFO replication``, cached for a second per node), else none. A replica
that stopped answering, or whose link was cut, is therefore waited for only
that long; meanwhile publishing waits, which is the price of never publishing
what a failover could undo. A master without replicas is not waited on.

``INFO replication`` is read once into :class:`Replication` (the master's id and
offset, a :class:`Replica` per ``slaveN`` row), not passed on as redis-py's dict;
an offset that is not a number confirms nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster

from controller.adapters.redis.client import RedisClient, translated
from controller.core.common import StoreUnavailable
from controller.settings import RedisSettings

_MARK_TTL_MS = 60_000
_TOPOLOGY_TTL_S = 1.0


@dataclass(frozen=True, slots=True)
class Replica:
    """One ``slaveN`` row of ``INFO replication``, as the master sees that replica."""

    online: bool
    lag: int | None
    """Seconds since the replica last acknowledged; None when the row does not say."""
    offset: int
    """The replication offset it acknowledged; -1 when the row does not say."""

    def in_sync(self, max_lag: int) -> bool:
        return self.online and self.lag is not None and self.lag <= max_lag


@dataclass(frozen=True, slots=True)
class Replication:
    """What ``INFO replication`` says of a node, read once from redis-py's parsed reply."""

    role: str
    replid: str | None
    """The id of the replication history it serves (None when not said)."""
    offset: int | None
    """The master's replication offset (0 when not said; None when not a number)."""
    replicas: tuple[Replica, ...]

    @classmethod
    def of(cls, info: Mapping[str, object]) -> Replication:
        replid = info.get("master_replid")
        rows = [v for k, v in info.items() if str(k).startswith("slave") and isinstance(v, dict)]
        return cls(
            role=str(info.get("role", "")),
            replid=None if replid is None else str(replid),
            offset=_int(info.get("master_repl_offset", 0)),
            replicas=tuple(_replica(row) for row in rows),
        )


def _replica(row: Mapping[str, object]) -> Replica:
    offset = _int(row.get("offset"))
    return Replica(
        online=row.get("state") == "online",
        lag=_int(row.get("lag")),
        offset=-1 if offset is None else offset,
    )


def _int(value: object) -> int | None:
    """``value`` as redis-py parsed it (a number, or the text of one), else None."""
    if not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


class ReplicaWait:
    """Waits for replicas of the master that holds a key."""

    def __init__(self, client: RedisClient, *, settings: RedisSettings) -> None:
        self._redis = client
        self._wanted = settings.wait_replicas
        self._timeout_ms = settings.wait_timeout_ms
        self._max_lag = settings.wait_replica_max_lag_seconds
        self._known: dict[str, tuple[int, float]] = {}  # node -> replicas needed, when read
        self._in_sync_at: dict[str, float] = {}  # master -> when a replica was last in sync

    async def replicated(self, mark_key: str) -> int:
        """Wait until enough replicas have what the master of ``mark_key`` holds now; how many.

        Raises :class:`StoreUnavailable` when fewer acknowledged within the timeout.
        """
        node = self._node(mark_key)
        async with translated():
            needed = await self._needed(node)
            if needed == 0:
                return 0
            before, acked = await self._wait(mark_key, node, needed)
            if acked >= needed:
                acked = await self._confirmed(node, before)
        if acked < needed:
            self._known.pop(_name(node), None)  # read the topology afresh next time
            raise StoreUnavailable(
                f"redis: {acked} of {needed} replicas acknowledged within"
                f" {self._timeout_ms} ms; the publish waits so a failover cannot undo it"
            )
        return acked

    def _node(self, key: str) -> Any:
        if isinstance(self._redis, RedisCluster):
            return self._redis.get_node_from_key(key)
        return None

    async def _needed(self, node: Any) -> int:
        if self._wanted is not None:
            return self._wanted
        name, now = _name(node), time.monotonic()
        known = self._known.get(name)
        if known is not None and now - known[1] < _TOPOLOGY_TTL_S:
            return known[0]
        info = await self._info(node)
        # Remembered per master (its replication id), so a replica whose link
        # was cut is still waited for until it has been silent the longest lag.
        master = name if info.replid is None else info.replid
        if any(replica.in_sync(self._max_lag) for replica in info.replicas):
            self._in_sync_at[master] = now
        self._in_sync_at = {m: t for m, t in self._in_sync_at.items() if now - t <= self._max_lag}
        needed = 1 if master in self._in_sync_at else 0
        self._known[name] = (needed, now)
        return needed

    async def _wait(self, key: str, node: Any, needed: int) -> tuple[Replication, int]:
        """The master's replication state, a marker write and ``WAIT``, in one pipeline.

        On one connection and in that order, ``WAIT`` covers the marker, hence
        everything the master held when its state was read. ``WAIT`` is what
        makes replicas acknowledge at once instead of within a second.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            _on(pipe, node, "INFO", "replication")
            pipe.set(key, "1", px=_MARK_TTL_MS)
            _on(pipe, node, "WAIT", needed, self._timeout_ms)
            before, _, acked = await pipe.execute()
        return Replication.of(before), int(acked)

    async def _confirmed(self, node: Any, before: Replication) -> int:
        """How many replicas of the same master have acknowledged its offset in ``before``.

        The client library retries a pipeline whose connection broke (a failover)
        command by command, on other connections, where ``WAIT`` counts nothing
        of ours; the master's own word on its replicas' offsets cannot be fooled.
        """
        info = await self._info(node)
        if info.role != "master" or info.replid != before.replid or before.offset is None:
            return 0  # another master, or no offset to confirm against
        target = before.offset
        return sum(1 for replica in info.replicas if replica.offset >= target)

    async def _info(self, node: Any) -> Replication:
        if node is None:
            return Replication.of(await self._redis.info("replication"))
        return Replication.of(await self._redis.info("replication", target_nodes=node))


def _on(pipe: Any, node: Any, *args: Any) -> None:
    """Queue a command for ``node`` (a cluster's), or for the one node."""
    if node is None:
        pipe.execute_command(*args)
    else:
        pipe.execute_command(*args, target_nodes=node)


def _name(node: Any) -> str:
    return "" if node is None else str(node.name)
