"""Which Redis a URL names: one node or a cluster, and the cluster's start-up nodes."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from controller.adapters.redis.client import client_for, cluster_nodes, is_cluster
from controller.core.common.errors import StoreError
from controller.settings import RedisSettings, mask_url


@pytest.mark.parametrize(
    ("url", "cluster", "expected"),
    [
        ("redis://127.0.0.1:6379/0", False, False),
        ("rediss://cache:6380/0", False, False),
        ("redis+cluster://a:7000,b:7001", False, True),
        ("rediss+cluster://a:7000", False, True),
        ("redis://a:7000", True, True),
    ],
)
def test_the_scheme_or_the_setting_asks_for_a_cluster(
    url: str, cluster: bool, expected: bool
) -> None:
    assert is_cluster(RedisSettings(url=url, cluster=cluster)) is expected


def test_cluster_nodes_are_read_from_the_url() -> None:
    assert cluster_nodes("redis+cluster://user:pw@a:7000, b:7001,c") == [
        ("a", 7000),
        ("b", 7001),
        ("c", 6379),
    ]
    assert cluster_nodes("redis+cluster://[::1]:7000") == [("::1", 7000)]


@pytest.mark.parametrize("url", ["redis+cluster://a:x", "redis+cluster://a:0", "redis+cluster://"])
def test_a_bad_node_is_a_store_error(url: str) -> None:
    with pytest.raises(StoreError, match="host:port"):
        cluster_nodes(url)


async def test_the_client_class_follows_the_url() -> None:
    node = client_for(RedisSettings(url="redis://127.0.0.1:1/0"))
    cluster = client_for(RedisSettings(url="redis+cluster://127.0.0.1:1"))
    try:
        assert isinstance(node, aioredis.Redis)
        assert isinstance(cluster, RedisCluster)
    finally:
        await node.aclose()
        await cluster.aclose()


def test_a_cluster_url_password_is_masked() -> None:
    assert mask_url("redis+cluster://:secret@a:7000,b:7001") == "redis+cluster://:***@a:7000,b:7001"
