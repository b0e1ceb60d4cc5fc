"""Apache Kafka's node for the tests and ``dev up``: what it is started with."""

from __future__ import annotations

import base64

import pytest

from controller.dev.kafka_broker import new_cluster_id, render_properties
from controller.dev.kafka_cluster import cluster_properties, quorum_voters


def test_no_cluster_id_reads_as_an_option_to_the_storage_tool() -> None:
    # One URL-safe base64 id in 64 starts with "-"; 2,000 draws meet one all but surely.
    drawn = [new_cluster_id() for _ in range(2000)]
    assert [cluster_id for cluster_id in drawn if cluster_id.startswith("-")] == []
    assert {len(cluster_id) for cluster_id in drawn} == {22}
    assert all(len(base64.urlsafe_b64decode(c + "==")) == 16 for c in drawn[:50])


@pytest.mark.parametrize(
    ("properties", "text"),
    [
        ({}, ""),
        ({"node.id": "1"}, "node.id=1\n"),
        ({"a": "1", "b": "x=y"}, "a=1\nb=x=y\n"),
    ],
)
def test_properties_are_written_one_a_line_in_order(properties: dict[str, str], text: str) -> None:
    assert render_properties(properties) == text


@pytest.mark.parametrize(
    ("ports", "voters"),
    [
        ({1: 9101}, "1@127.0.0.1:9101"),
        ({3: 9103, 1: 9101, 2: 9102}, "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"),
    ],
)
def test_the_quorum_names_every_node_by_id(ports: dict[int, int], voters: str) -> None:
    assert quorum_voters(ports) == voters


@pytest.mark.parametrize(
    ("nodes", "replicas", "in_sync"), [(1, "1", "1"), (2, "2", "2"), (3, "3", "2"), (5, "5", "2")]
)
def test_a_cluster_replicates_to_every_node_and_writes_to_two(
    nodes: int, replicas: str, in_sync: str
) -> None:
    properties = cluster_properties(nodes)
    assert properties["default.replication.factor"] == replicas
    assert properties["offsets.topic.replication.factor"] == replicas
    assert properties["min.insync.replicas"] == in_sync
    assert properties["transaction.state.log.min.isr"] == in_sync
