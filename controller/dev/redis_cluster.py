"""A Redis Cluster of the dev tooling's own: three masters on free ports, no replicas.

Each node is a :class:`RedisServer` started with ``--cluster-enabled yes`` and
its own cluster bus port (``--cluster-port``, so no port + 10000 arithmetic
can collide). The cluster is formed without ``redis-cli`` or a Redis client
(the dev tooling speaks the few commands it needs itself): each node is given
a third of the slots with ``CLUSTER ADDSLOTSRANGE`` and introduced to the first
with ``CLUSTER MEET``; :meth:`RedisClusterServers.start` returns once every node
reports ``cluster_state:ok``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Self

from controller.dev.processes import LOCALHOST, StartStop, free_port
from controller.dev.redis_server import RedisServer

SLOTS = 16384


class RedisClusterServers(StartStop):
    """``masters`` Redis nodes forming one cluster; ``url`` is a ``redis+cluster://`` URL."""

    def __init__(
        self, workdir: Path, *, masters: int = 3, persistent: bool = False, timeout: float = 30.0
    ) -> None:
        self.timeout = timeout
        self.bus_ports = [free_port() for _ in range(masters)]
        self.nodes = [
            RedisServer(
                workdir / f"node-{i}",
                persistent=persistent,
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    str(self.bus_ports[i]),
                ],
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{LOCALHOST}:{n.port}" for n in self.nodes)

    def start(self) -> Self:
        """Start every node, split the slots among them, and wait for ``cluster_state:ok``."""
        try:
            for node in self.nodes:
                node.start()
            self._form()
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self) -> None:
        share = SLOTS // len(self.nodes)
        for index, node in enumerate(self.nodes):
            first = index * share
            last = SLOTS - 1 if index == len(self.nodes) - 1 else first + share - 1
            _command(node.port, "CLUSTER", "ADDSLOTSRANGE", first, last)
            if index > 0:
                first_node = (LOCALHOST, self.nodes[0].port, self.bus_ports[0])
                _command(node.port, "CLUSTER", "MEET", *first_node)
        deadline = time.monotonic() + self.timeout
        while not all(self._node_ok(n.port) for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster at {self.url} not ok after {self.timeout:.0f}s")
            time.sleep(0.1)

    def _node_ok(self, port: int) -> bool:
        """Whether the node reports the cluster ok and knows every other node."""
        text = _command(port, "CLUSTER", "INFO").decode(errors="replace")
        return "cluster_state:ok" in text and f"cluster_known_nodes:{len(self.nodes)}" in text

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __repr__(self) -> str:
        return f"<RedisClusterServers {self.url}>"


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
