"""A Redis Cluster of the dev tooling's own: three masters on free ports, optionally replicas.

Each node is a :class:`RedisServer` started with ``--cluster-enabled yes`` and
its own cluster bus port (``--cluster-port``, so no port + 10000 arithmetic
can collide). The cluster is formed without ``redis-cli`` or a Redis client
(the dev tooling speaks the few commands it needs itself): each node is given
a third of the slots with ``CLUSTER ADDSLOTSRANGE`` and introduced to the first
with ``CLUSTER MEET``; :meth:`RedisClusterServers.start` returns once every node
reports ``cluster_state:ok``. With ``replicas=n`` each master gets ``n`` replicas
(``CLUSTER REPLICATE``), so killing a master shows a failover: after
``node_timeout_ms`` its replica is promoted.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from controller.dev.processes import LOCALHOST, StartStop, free_port
from controller.dev.redis_server import RedisServer

SLOTS = 16384


class RedisClusterServers(StartStop):
    """``masters`` Redis nodes forming one cluster; ``url`` is a ``redis+cluster://`` URL."""

    def __init__(
        self,
        workdir: Path,
        *,
        masters: int = 3,
        replicas: int = 0,
        persistent: bool = False,
        node_timeout_ms: int = 2000,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout
        self.masters = masters
        self._workdir = workdir
        self._persistent = persistent
        self._node_timeout_ms = node_timeout_ms
        total = masters * (1 + replicas)
        self.bus_ports = [free_port() for _ in range(total)]
        self.nodes = [self._node(i, workdir / f"node-{i}") for i in range(total)]

    def _node(self, index: int, workdir: Path) -> RedisServer:
        return RedisServer(
            workdir,
            persistent=self._persistent,
            extra_args=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self._node_timeout_ms),
                "--cluster-port",
                str(self.bus_ports[index]),
            ],
        )

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOCALHOST}:{n.port}" for n in self.nodes)

    @property
    def primaries(self) -> list[RedisServer]:
        """The nodes started as masters (a failover may since have demoted one)."""
        return self.nodes[: self.masters]

    def start(self) -> Self:
        """Start every node, split the slots among them, and wait for ``cluster_state:ok``."""
        try:
            for index in range(len(self.nodes)):
                self._start_node(index)
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self, index: int, attempts: int = 5) -> None:
        """Start one node; on a port taken since it was picked, pick new ports and retry.

        Ports are chosen free but not held, and two per node are needed (client
        and cluster bus), so on a busy machine another process can take one first.
        """
        for attempt in range(1, attempts + 1):
            try:
                self.nodes[index].start()
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts:
                    raise
            else:
                return
            self.bus_ports[index] = free_port()
            self.nodes[index] = self._node(index, self._workdir / f"node-{index}-{attempt}")

    def _form(self) -> None:
        share = SLOTS // self.masters
        first_node = (LOCALHOST, self.nodes[0].port, self.bus_ports[0])
        for index, node in enumerate(self.nodes):
            if index < self.masters:
                first = index * share
                last = SLOTS - 1 if index == self.masters - 1 else first + share - 1
                _command(node.port, "CLUSTER", "ADDSLOTSRANGE", first, last)
            if index > 0:
                _command(node.port, "CLUSTER", "MEET", *first_node)
        self._wait("every node to know the others", self._knows_all)
        for index, node in enumerate(self.nodes[self.masters :]):
            master = self.nodes[index % self.masters]
            master_id = _command(master.port, "CLUSTER", "MYID").decode()
            # The replica must have learnt of the master through gossip first.
            self._wait(
                f"node {node.port} to see {master_id}",
                functools.partial(_knows, node.port, master_id),
            )
            _command(node.port, "CLUSTER", "REPLICATE", master_id)
        self._wait("cluster_state:ok and replicas in sync", self._ready)

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis cluster at {self.url}: no {what} after {self.timeout:.0f}s"
                )
            time.sleep(0.1)

    def _knows_all(self) -> bool:
        want = f"cluster_known_nodes:{len(self.nodes)}"
        return all(want in _command(n.port, "CLUSTER", "INFO").decode() for n in self.nodes)

    def _ready(self) -> bool:
        """Every node reports the cluster ok, and every replica's link to its master is up."""
        if not all(self._node_ok(n.port) for n in self.nodes):
            return False
        return all(
            "master_link_status:up" in _command(n.port, "INFO", "replication").decode()
            for n in self.nodes[self.masters :]
        )

    def _node_ok(self, port: int) -> bool:
        """Whether the node reports the cluster ok and knows every other node."""
        text = _command(port, "CLUSTER", "INFO").decode(errors="replace")
        return "cluster_state:ok" in text and f"cluster_known_nodes:{len(self.nodes)}" in text

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __repr__(self) -> str:
        return f"<RedisClusterServers {self.url}>"


def _knows(port: int, node_id: str) -> bool:
    return node_id in nodes_text(port)


def nodes_text(port: int) -> str:
    """``CLUSTER NODES`` as the node on ``port`` sees the cluster (roles, links, slots)."""
    return _command(port, "CLUSTER", "NODES").decode(errors="replace")


def _command(port: int, *args: object) -> bytes:
    """Send one command to the node on ``port``; its reply (a status or a bulk string).

    Raises RuntimeError on an error reply.
    """
    parts = [str(a).encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((LOCALHOST, port), timeout=5.0) as conn:
        conn.sendall(request)
        reply = conn.makefile("rb")
        line = reply.readline().rstrip(b"\r\n")
        if line.startswith(b"-"):
            raise RuntimeError(f"redis on port {port}: {args[:2]} failed: {line[1:].decode()}")
        if line.startswith(b"$"):
            return reply.read(int(line[1:]))
        return line[1:]
