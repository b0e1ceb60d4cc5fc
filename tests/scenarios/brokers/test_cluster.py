"""A whole rollout with the daemon on a 3-master Redis Cluster (``redis+cluster://``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.integration.rig import drop_keys
from tests.scenarios.harness import Scenario, fast_plan, scenario_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
async def cluster_scenario(
    kafka_bootstrap: str,
    redis_cluster_url: str,
    topic_factory: Callable[..., Awaitable[str]],
    tmp_path: Path,
) -> AsyncIterator[Scenario]:
    topics = await scenario_topics(topic_factory)
    prefix = f"rctest:{uuid.uuid4().hex[:8]}"
    async with Scenario(
        bootstrap=kafka_bootstrap,
        redis_url=redis_cluster_url,
        prefix=prefix,
        topics=topics,
        workdir=tmp_path,
    ) as world:
        yield world
    async with connect(RedisSettings(url=redis_cluster_url)) as client:
        await drop_keys(client, prefix)


async def test_a_rollout_completes_on_a_redis_cluster(cluster_scenario: Scenario) -> None:
    world = cluster_scenario
    # Given a daemon whose REDIS_URL is a redis+cluster:// URL, and apps serving a flag
    world.start_daemon()
    world.run_apps("checkout")
    # When an operator starts a rollout
    await world.start("checkout", fast_plan())
    # Then every gate reads the aggregates across the cluster's nodes and the rollout completes
    done = await world.until(
        lambda: world.observed.decision_where(flag="checkout", action="complete"),
        timeout=120,
        what="the rollout to complete on the cluster",
    )
    assert done["phase_after"] == "completed"
    advances = [d for d in world.observed.decisions if d["action"] == "advance"]
    assert [d["stage"] for d in advances] == [1, 2, 3, 4]
    assert all(d["evidence"]["arms"]["treatment"]["units"] >= 20 for d in advances)
    states = [s["version"] for s in world.observed.flag_states if s["flag"] == "checkout"]
    assert states == sorted(states)
    # And the events the daemon counted sit on more than one node, all of them counted
    async with connect(RedisSettings(url=world.redis_url)) as client:
        settings = RedisSettings(key_prefix=world.prefix)
        store = RedisAggregateStore(client, settings=settings, topic=world.topics["events"])
        assert len(await store.partitions()) == 4
        assert await store.rejects() == {}
    assert "Traceback" not in world.daemon.log_text()
