"""A cluster of Apache Kafka nodes from ``make kafka``'s jars, for the tests that take a
partition's leader away.

Each node is both broker and KRaft controller (:class:`KafkaBroker` with its own id
and ports), all formatted with one cluster id and sharing one controller quorum. Three
nodes by default: a quorum of two voters stops electing when either is gone, so
losing one node of a cluster needs three. Topics are replicated to every node and a
write needs two in sync, as a production cluster runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from controller.dev.kafka_broker import KafkaBroker, new_cluster_id
from controller.dev.processes import LOCALHOST, StartStop, free_port


def quorum_voters(controller_ports: Mapping[int, int]) -> str:
    """``controller.quorum.voters``: ``id@host:port`` of each node, by node id."""
    return ",".join(f"{n}@{LOCALHOST}:{controller_ports[n]}" for n in sorted(controller_ports))


def cluster_properties(nodes: int) -> dict[str, str]:
    """What a cluster's nodes run with, beyond a single node's own settings."""
    replicas = str(nodes)
    in_sync = str(min(2, nodes))
    return {
        "default.replication.factor": replicas,
        "min.insync.replicas": in_sync,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": in_sync,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": in_sync,
        # A node that stops heartbeating loses its partitions' leadership in 3 s, not 9.
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
    }


class KafkaCluster(StartStop):
    """``nodes`` Apache Kafka nodes on 127.0.0.1, node ``n``'s data in ``workdir/node-n``."""

    def __init__(
        self, workdir: Path, *, nodes: int = 3, properties: Mapping[str, str] | None = None
    ) -> None:
        controllers = {n: free_port() for n in range(1, nodes + 1)}
        voters = quorum_voters(controllers)
        cluster_id = new_cluster_id()
        extra = {**cluster_properties(nodes), **(properties or {})}
        self.nodes = {
            n: KafkaBroker(
                workdir / f"node-{n}",
                node_id=n,
                controller_port=port,
                quorum_voters=voters,
                cluster_id=cluster_id,
                properties=extra,
            )
            for n, port in controllers.items()
        }
        self.started_in: float | None = None
        """Seconds the last ``start()`` took, formatting included."""

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes.values())

    def start(self) -> Self:
        """Start every node, then wait until each serves (none does before a majority runs)."""
        began = time.monotonic()
        stopped = [node for node in self.nodes.values() if not node.running()]
        for node in stopped:
            node.launch()
        for node in stopped:
            node.wait_until_serving()
        self.started_in = time.monotonic() - began
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def rss_bytes(self) -> int:
        """The running nodes' resident memory, together."""
        return sum(node.rss_bytes() or 0 for node in self.nodes.values())

    def __repr__(self) -> str:
        return f"<KafkaCluster {self.bootstrap}>"
