"""What only a Redis Cluster shows: reads across nodes, rollout state, the errors a user meets."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient, cluster_nodes, translated
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.common.errors import StoreError
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.stats.folding import PartitionDelta, fold
from controller.ports import CommandSeen, OutboxMessage, SaveOutcome, StateWrite
from controller.settings import RedisSettings
from tests.integration.rig import drop_keys
from tests.integration.stores.test_store import decoded
from tests.support.reference import make_event

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(redis_cluster_url: str, redis_namespace: str) -> AsyncIterator[RedisClient]:
    async with connect(RedisSettings(url=redis_cluster_url)) as client:
        yield client
        await drop_keys(client, redis_namespace)


async def test_the_url_builds_a_cluster_client_that_sees_three_masters(
    cluster: RedisClient,
) -> None:
    assert isinstance(cluster, RedisCluster)
    await cluster.ping()
    assert len(cluster.get_primaries()) == 3


async def test_a_read_sums_partitions_held_by_every_node(
    cluster: RedisClient, redis_namespace: str
) -> None:
    assert isinstance(cluster, RedisCluster)
    settings = RedisSettings(key_prefix=redis_namespace)
    store = RedisAggregateStore(cluster, settings=settings, topic="events")
    rng = random.Random(7)
    # The same unit under two versions counts once: PFCOUNT of the union, per partition.
    events = [
        {**make_event(rng, i), "flag": "f", "unit": f"u{i % 10}", "flag_version": 1 + i % 2}
        for i in range(60)
    ]
    nodes = set()
    for p in range(8):
        claim = await store.claim(p)
        delta = PartitionDelta(partition=p, next_offset=1)
        fold([decoded(e) for e in events if hash(e["unit"]) % 8 == p], delta.cells)
        await store.flush(delta, epoch=claim.epoch, expected_offset=None)
        node = cluster.get_node_from_key(f"{{{redis_namespace}:events:{p}}}:meta")
        assert node is not None
        nodes.add(node.name)
    assert len(nodes) > 1, "the partitions' hash tags should land on more than one node"
    got = await store.read("f", {1, 2})
    arms = {"treatment": got.treatment, "control": got.control}
    for arm, agg in arms.items():
        of_arm = [e for e in events if e["arm"] == arm]
        assert agg.exposures == sum(e["type"] == "exposure" for e in of_arm)
        assert agg.units == len({e["unit"] for e in of_arm})


async def test_rollout_state_commands_and_outbox_work_on_a_cluster(
    cluster: RedisClient, redis_namespace: str
) -> None:
    store = RolloutStore(cluster, settings=RedisSettings(key_prefix=redis_namespace))
    now = datetime.now(UTC)
    rollout = Rollout(
        flag="f",
        rollout_id="r",
        plan=DEFAULT_PLAN,
        phase=Phase.RUNNING,
        stage=0,
        stage_started_at=now,
        salt="s",
        flag_version=1,
        stage_versions={0: [1]},
        started_at=now,
        updated_at=now,
    )
    message = OutboxMessage("t", "f", b"{}")
    write = StateWrite(rev=0, rollout=rollout, outbox=[message], command_id="c1", now_ms=1)
    assert await store.save("f", write) is SaveOutcome.SAVED
    assert await store.save("f", write) is SaveOutcome.ALREADY_APPLIED
    assert (await store.load("f")).rollout == rollout
    assert await store.seen("f", "c1") is CommandSeen.REPLAYED
    pending = await store.pending("f")
    assert pending == [message]
    await store.published("f", [m.id for m in pending])
    assert await store.pending("f") == []
    assert await store.flags() == {"f"}
    assert await store.claim("d1", ttl_s=60)
    assert not await store.claim("d1", ttl_s=60)


async def test_a_plain_client_on_a_cluster_is_told_to_use_the_cluster_url(
    cluster: RedisClient, redis_cluster_url: str, redis_namespace: str
) -> None:
    assert isinstance(cluster, RedisCluster)
    await cluster.initialize()
    host, port = cluster_nodes(redis_cluster_url)[0]

    def node_port(p: int) -> int | None:
        node = cluster.get_node_from_key(f"{{{redis_namespace}:events:{p}}}:meta")
        return None if node is None else int(node.port)

    elsewhere = next(p for p in range(64) if node_port(p) != port)
    async with aioredis.Redis(host=host, port=port) as plain:
        store = RedisAggregateStore(
            plain, settings=RedisSettings(key_prefix=redis_namespace), topic="events"
        )
        with pytest.raises(StoreError, match=r"Redis Cluster.*redis\+cluster://"):
            await store.offset(elsewhere)


async def test_a_cluster_client_refusal_is_a_store_error(cluster: RedisClient) -> None:
    # RedisClusterException is not a RedisError: a cluster pipeline refuses PFCOUNT with it.
    async def pipelined_pfcount() -> None:
        async with translated(), cluster.pipeline(transaction=False) as pipe:
            pipe.pfcount("{a}x")
            await pipe.execute()

    with pytest.raises(StoreError, match="redis cluster error"):
        await pipelined_pfcount()
