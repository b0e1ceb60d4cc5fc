"""The store-loss scenarios' worlds: the daemon on Apache Kafka and a store of its own that
keeps nothing on disk, one Redis (``world``) or a 3-master Redis Cluster (``cluster_world``)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controller.dev.redis_cluster import RedisClusterServers
from tests.conftest import RedisServerFactory
from tests.scenarios.harness import Scenario, topics_on
from tests.scenarios.store_loss.kit import ClusterWorld, World, spread_prefix
from tests.support.backing.redis_failover import collect_left_nodes
from tests.support.backing.services import free_port


@pytest.fixture
async def world(
    apache_kafka_bootstrap: str, redis_server_factory: RedisServerFactory, tmp_path: Path
) -> AsyncIterator[World]:
    """The daemon on Apache Kafka and a Redis of its own that keeps nothing on disk."""
    redis = redis_server_factory(persistent=False)
    prefix = f"rc-lost-{uuid.uuid4().hex[:6]}"
    async with _daemon(apache_kafka_bootstrap, redis.url, prefix, tmp_path) as (scenario, url):
        yield World(scenario, redis, url)


@pytest.fixture
async def cluster_world(
    apache_kafka_bootstrap: str, redis_server_factory: RedisServerFactory, tmp_path: Path
) -> AsyncIterator[ClusterWorld]:
    """The daemon on Apache Kafka and a 3-master Redis Cluster of its own (no replicas,
    nothing kept on disk), its key prefix chosen so that the store's identity, its set of
    flags and the flag's keys are each on another master.

    ``redis_server_factory`` is asked for its check alone: without a ``redis-server``
    binary it skips, or fails when ``CI`` is set.
    """
    cluster = RedisClusterServers(tmp_path / "cluster", masters=3).start()
    try:
        prefix = spread_prefix()
        async with _daemon(apache_kafka_bootstrap, cluster.url, prefix, tmp_path) as (s, url):
            yield ClusterWorld(s, cluster, url, prefix)
    finally:
        collect_left_nodes()
        cluster.stop()


@contextlib.asynccontextmanager
async def _daemon(
    bootstrap: str, redis_url: str, prefix: str, workdir: Path
) -> AsyncIterator[tuple[Scenario, str]]:
    """A scenario on ``redis_url`` with its daemon started: the scenario and its HTTP URL."""
    async with Scenario(
        bootstrap=bootstrap,
        redis_url=redis_url,
        prefix=prefix,
        topics=await topics_on(bootstrap, "lost", events=2, commands=1),
        workdir=workdir,
    ) as scenario:
        port = free_port()
        scenario.configure(RC_HTTP__PORT=str(port), RC_HTTP__HOST="127.0.0.1")
        scenario.start_daemon()
        yield scenario, f"http://127.0.0.1:{port}"
