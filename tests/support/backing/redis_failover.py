"""Redis topologies with replicas for failover tests: a Redis Cluster, or a master under Sentinel.

Each answers the questions a failover test asks, from Redis itself rather than
from sleeps: which master holds a key, which replica follows it, whether that
replica has been promoted. :func:`lose_writes_from` makes a master acknowledge
writes no replica will ever have: the replica hangs (SIGSTOP) and its link is
cut (``CLIENT KILL TYPE replica``), so nothing more reaches it, even from the
socket buffers.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
import redis
from redis.crc import key_slot

from controller.dev.redis_cluster import SLOTS, RedisClusterServers, nodes_text
from tests.support.backing.services import LOCALHOST, ManagedProcess, RedisServer, free_port
from tests.support.waiting import eventually_sync

SERVICE = "rc-failover"


def ask(port: int, *args: object) -> object:
    """One command to the Redis on ``port`` (a short-lived connection)."""
    with redis.Redis(host=LOCALHOST, port=port, socket_timeout=2, socket_connect_timeout=2) as r:
        r.response_callbacks.clear()  # the replies as Redis sent them
        return r.execute_command(*args)


def answers(port: int, *args: object) -> object | None:
    """Like :func:`ask`, or None when the server does not answer."""
    try:
        return ask(port, *args)
    except (redis.RedisError, OSError):
        return None


class Topology(Protocol):
    url: str

    def master_of(self, key: str) -> RedisServer: ...
    def replica_of(self, master: RedisServer) -> RedisServer: ...
    def promoted(self, replica: RedisServer) -> bool: ...


class ClusterTopology:
    """3 masters with a replica each, 1 s node timeout (failover in about 2-3 s)."""

    def __init__(self, workdir: Path) -> None:
        self.servers = RedisClusterServers(workdir, masters=3, replicas=1, node_timeout_ms=1000)
        self.url = self.servers.url

    def master_of(self, key: str) -> RedisServer:
        masters = self.servers.masters
        index = min(key_slot(key.encode()) // (SLOTS // masters), masters - 1)
        return self.servers.nodes[index]

    def replica_of(self, master: RedisServer) -> RedisServer:
        index = self.servers.primaries.index(master)
        return self.servers.nodes[self.servers.masters + index]

    def promoted(self, replica: RedisServer) -> bool:
        """Whether the replica's own line of ``CLUSTER NODES`` says master."""
        try:
            text = nodes_text(replica.port)
        except (OSError, RuntimeError):
            return False
        mine = next(line for line in text.splitlines() if "myself" in line)
        return "master" in mine.split()[2]


class SentinelTopology:
    """A master, its replica and one sentinel (quorum 1, down after 1 s)."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self._workdir, self._binary = workdir, binary
        self.master = RedisServer(workdir / "master", persistent=False, binary=binary)
        self.replica: RedisServer | None = None
        self.sentinel: ManagedProcess | None = None
        self.sentinel_port = free_port()
        self.url = f"redis+sentinel://{LOCALHOST}:{self.sentinel_port}/{SERVICE}"

    def start(self) -> None:
        self.master.start()
        self.replica = RedisServer(
            self._workdir / "replica",
            persistent=False,
            binary=self._binary,
            extra_args=["--replicaof", LOCALHOST, str(self.master.port)],
        ).start()
        eventually_sync(
            lambda: _link_up(self.replica),  # type: ignore[arg-type]
            timeout=30,
            what="the replica to sync",
        )
        conf = self._workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind {LOCALHOST}\ndir {self._workdir}\n"
            f"sentinel monitor {SERVICE} {LOCALHOST} {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self.sentinel = ManagedProcess(
            [self._binary, str(conf), "--sentinel"], self._workdir / "sentinel.log"
        )
        eventually_sync(
            self._knows_replica, timeout=30, what="the sentinel to know the master and its replica"
        )

    def _knows_replica(self) -> bool:
        assert self.replica is not None
        found = answers(self.sentinel_port, "SENTINEL", "REPLICAS", SERVICE)
        port = str(self.replica.port).encode()
        return isinstance(found, list) and any(_port_of(row) == port for row in found)

    def stop(self) -> None:
        for server in (self.replica, self.master):
            if server is not None:
                server.stop()
        if self.sentinel is not None:
            self.sentinel.stop()

    def master_of(self, key: str) -> RedisServer:
        return self.master

    def replica_of(self, master: RedisServer) -> RedisServer:
        assert self.replica is not None
        return self.replica

    def promoted(self, replica: RedisServer) -> bool:
        """Whether the sentinel names the replica as master and the replica agrees."""
        named = answers(self.sentinel_port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        if not isinstance(named, list) or int(named[1]) != replica.port:
            return False
        role = answers(replica.port, "ROLE")
        return isinstance(role, list) and role[0] == b"master"


def _port_of(row: object) -> object:
    """A replica's port in a ``SENTINEL REPLICAS`` row (redis-py reads rows as dicts)."""
    if isinstance(row, dict):
        return row.get(b"port")
    if isinstance(row, list) and b"port" in row:
        return row[row.index(b"port") + 1]
    return None


def _link_up(server: RedisServer) -> bool:
    info = answers(server.port, "INFO", "replication")
    return isinstance(info, bytes) and b"master_link_status:up" in info


def stored(port: int, key: str, field: str) -> int:
    """An integer field of a hash as the Redis on ``port`` holds it (-1: none)."""
    value = answers(port, "HGET", key, field)
    return int(value) if isinstance(value, bytes) else -1


def cut_off(master: RedisServer, replica: RedisServer) -> None:
    """Hang ``replica`` and cut its link: nothing ``master`` writes from now on reaches it."""
    replica.pause()
    ask(master.port, "CLIENT", "KILL", "TYPE", "replica")


@contextlib.contextmanager
def running(topology: ClusterTopology | SentinelTopology) -> Iterator[None]:
    """Start ``topology`` and stop it whatever happens (a fixture's body)."""
    try:
        if isinstance(topology, ClusterTopology):
            topology.servers.start()
        else:
            topology.start()
        yield
    finally:
        if isinstance(topology, ClusterTopology):
            topology.servers.stop()
        else:
            topology.stop()


CLUSTER_NODE_LEFT = (
    pytest.mark.filterwarnings("ignore:Unclosed ClusterNode object:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:unclosed Connection <redis:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:unclosed transport:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:unclosed <StreamWriter:ResourceWarning"),
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
)
"""Marks for a test in whose process a Redis Cluster master dies under a client: redis-py's
cluster client, when a node leaves its topology while a command holds one of its
connections, can leave that connection open (its issue "Unclosed ClusterNode object",
open; 8.1 closes such a node's free connections and marks the busy ones), warning when the
node is collected. Only the warnings of that node and its connection are ignored (an
unclosed client is still an error), and :func:`collect_left_nodes` collects them before
the test ends: never in a later test of the worker."""


def collect_left_nodes() -> None:
    """Collect what a cluster client left behind (a fixture's teardown, under
    :data:`CLUSTER_NODE_LEFT`)."""
    gc.collect()
