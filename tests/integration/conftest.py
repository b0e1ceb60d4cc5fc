"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from controller.adapters.redis.aggregates import connect
from controller.adapters.redis.client import RedisClient
from controller.settings import RedisSettings
from tests.integration.rig import Rig, drop_keys

TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def rig(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> Rig:
    events = await topic_factory("events", partitions=4)
    dlq = await topic_factory("dlq", partitions=1)
    return Rig(kafka_bootstrap, redis_url, events, dlq, redis_namespace)


@pytest.fixture(params=["node", "cluster"])
def store_url(request: pytest.FixtureRequest) -> str:
    """The session's single Redis node, then its 3-master Redis Cluster."""
    name = "redis_url" if request.param == "node" else "redis_cluster_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def store_client(store_url: str, redis_namespace: str) -> AsyncIterator[RedisClient]:
    """A client of ``store_url``; the namespace's keys are deleted at teardown (every node)."""
    async with connect(RedisSettings(url=store_url)) as client:
        yield client
        await drop_keys(client, redis_namespace)
