"""Rollout states wait for a replica before they are published (Redis ``WAIT``).

Against a real master and replica (found through a real sentinel): the wait
returns once the replica has the master's writes; with the replica hung and
its link cut it fails as retriable, until the replica has been silent for
``wait_replica_max_lag_seconds`` and is no longer waited for; a master
without replicas is never waited on.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from controller.adapters.redis.client import connect
from controller.adapters.redis.replicas import ReplicaWait
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.common.errors import StoreUnavailable
from controller.settings import RedisSettings
from tests.conftest import RedisServerFactory
from tests.support.backing.redis_failover import SentinelTopology, ask, running
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel(
    tmp_path: Path, redis_server_factory: RedisServerFactory
) -> Iterator[SentinelTopology]:
    binary = redis_server_factory(persistent=False).binary  # skips or fails without one
    topology = SentinelTopology(tmp_path / "sentinel", binary)
    with running(topology):
        yield topology


async def test_a_master_without_replicas_is_not_waited_on(
    redis_url: str, redis_namespace: str
) -> None:
    settings = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    async with connect(settings) as client:
        assert await ReplicaWait(client, settings=settings).replicated(f"{redis_namespace}:m") == 0
        await RolloutStore(client, settings=settings).replicated("f")


async def test_the_wait_follows_the_replica(
    sentinel: SentinelTopology, redis_namespace: str
) -> None:
    settings = RedisSettings(
        url=sentinel.url,
        key_prefix=redis_namespace,
        wait_timeout_ms=200,
        wait_replica_max_lag_seconds=1,
    )
    replica = sentinel.replica_of(sentinel.master)
    async with connect(settings) as client:
        waits = ReplicaWait(client, settings=settings)
        # Given a replica in sync (once it has connected and acknowledged: a
        # replica that just started is not waited for yet), the wait returns
        # once it has the writes
        await _until_waited_for(waits)
        # When it hangs and its link is cut
        replica.pause()
        ask(sentinel.master.port, "CLIENT", "KILL", "TYPE", "replica")
        # Then the wait fails as retriable, so nothing is published yet
        with pytest.raises(StoreUnavailable) as failed:
            await waits.replicated("mark")
        assert failed.value.retriable
        # until the replica has been silent longer than the longest lag allowed
        await eventually(
            partial(_waited_for, waits, 0),
            timeout=15,
            what="the silent replica no longer waited for",
            most=0.05,
        )
        # And once it answers again, it is waited for again
        replica.resume()
        await _until_waited_for(waits)


async def _waited_for(waits: ReplicaWait, replicas: int) -> bool:
    """Whether a wait returns having waited for ``replicas`` (False: it timed out)."""
    try:
        return await waits.replicated("mark") == replicas
    except StoreUnavailable:  # a replica waited for did not catch up within the wait
        return False


async def _until_waited_for(waits: ReplicaWait) -> None:
    """Until one replica is waited for and has the writes."""
    await eventually(
        partial(_waited_for, waits, 1),
        timeout=20,
        what="the replica that answers waited for",
        most=0.05,
    )
