"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.integration.rig import Rig

TopicFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def rig(
    kafka_bootstrap: str, redis_url: str, topic_factory: TopicFactory, redis_namespace: str
) -> Rig:
    events = await topic_factory("events", partitions=4)
    dlq = await topic_factory("dlq", partitions=1)
    return Rig(kafka_bootstrap, redis_url, events, dlq, redis_namespace)
