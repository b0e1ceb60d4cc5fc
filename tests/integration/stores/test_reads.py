"""The read API's cost against a real Redis, one node and a 3-master cluster: how many
round trips one ``GET /flags`` or ``GET /rollouts`` makes, for 10 flags and for 1,000."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio.connection import AbstractConnection

from controller.adapters.http import HttpServer
from controller.adapters.redis.aggregates import RedisAggregateStore
from controller.adapters.redis.client import RedisClient, connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.reading.views import FlagStates, RolloutList
from controller.daemon.serving.read_worker import flag_states
from controller.daemon.serving.status import StatusView
from controller.ports import SaveOutcome, StateWrite
from controller.settings import HttpSettings, RedisSettings
from tests.support.backing.services import free_port
from tests.unit.core.machine.gate.test_gate import rollout

pytestmark = pytest.mark.integration


class RoundTrips:
    """Counts what the Redis clients send: a command or a whole pipeline is one round trip.

    Every command and every pipeline of redis-py (of one node or of a cluster
    node) goes out through one ``send_packed_command`` call on its connection;
    the health-check ``PING`` a client sends on its own goes out without a
    health check, and is not counted.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        send = AbstractConnection.send_packed_command

        async def counted(
            self_: AbstractConnection, command: Any, check_health: bool = True
        ) -> None:
            self.count += check_health
            await send(self_, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)

    async def of(self, call: Callable[[], Awaitable[Any]]) -> int:
        before = self.count
        await call()
        return self.count - before


@asynccontextmanager
async def read_api(client: RedisClient, prefix: str) -> AsyncIterator[str]:
    """The daemon's HTTP server over the Redis stores, on 127.0.0.1: its base URL."""
    settings = RedisSettings(key_prefix=prefix)
    states = RolloutStore(client, settings=settings)
    aggregates = RedisAggregateStore(client, settings=settings, topic="events")
    for partition in range(3):
        await aggregates.claim(partition)
    status = StatusView(
        states=states,
        aggregates=aggregates,
        stale_after=timedelta(days=30),
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    port = free_port()
    server = HttpServer(
        host="127.0.0.1",
        port=port,
        readiness=ready,
        flags=lambda: flag_states(states, None),
        metrics=lambda: b"",
        metrics_content_type="text/plain",
        rollouts=status,
        # Every request builds its answer here: the round trips counted are a build's.
        limits=HttpSettings(reads_max_age_seconds=0),
    )
    async with server:
        yield f"http://127.0.0.1:{port}"


async def store_rollouts(client: RedisClient, prefix: str, first: int, last: int) -> None:
    states = RolloutStore(client, settings=RedisSettings(key_prefix=prefix))
    for i in range(first, last):
        saved = rollout().model_copy(update={"flag": f"flag-{i:04d}", "rollout_id": f"r{i}"})
        assert await states.save(saved.flag, StateWrite(rev=0, rollout=saved)) == SaveOutcome.SAVED


async def test_get_flags_makes_the_same_few_round_trips_for_10_flags_as_for_1000(
    store_client: RedisClient,
    redis_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trips = RoundTrips(monkeypatch)
    async with read_api(store_client, redis_namespace) as base, httpx.AsyncClient() as http:

        async def get_flags() -> None:
            answer = await http.get(f"{base}/flags")
            assert answer.status_code == 200
            served.append(FlagStates.model_validate(answer.json()))

        served: list[FlagStates] = []
        await store_rollouts(store_client, redis_namespace, 0, 10)
        await get_flags()  # connections to every node opened
        for_10 = await trips.of(get_flags)
        await store_rollouts(store_client, redis_namespace, 10, 1000)
        for_1000 = await trips.of(get_flags)

    assert [len(s.root) for s in served] == [10, 10, 1000]
    assert [s.flag for s in served[-1].root] == [f"flag-{i:04d}" for i in range(1000)]
    # The set of flags, then every state in one pipeline: one per node on a cluster.
    assert for_10 == for_1000
    nodes = len(store_client.get_primaries()) if hasattr(store_client, "get_primaries") else 1
    assert for_1000 <= 1 + nodes


async def test_get_rollouts_reads_every_gate_in_the_same_round_trips_for_10_and_1000(
    redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = RoundTrips(monkeypatch)
    async with (
        connect(RedisSettings(url=redis_url)) as client,
        read_api(client, redis_namespace) as base,
        httpx.AsyncClient(timeout=30) as http,
    ):

        async def get_rollouts() -> None:
            answer = await http.get(f"{base}/rollouts")
            assert answer.status_code == 200
            served.append(RolloutList.model_validate(answer.json()))

        served: list[RolloutList] = []
        await store_rollouts(client, redis_namespace, 0, 10)
        await get_rollouts()
        for_10 = await trips.of(get_rollouts)
        await store_rollouts(client, redis_namespace, 10, 1000)
        for_1000 = await trips.of(get_rollouts)

    assert [len(s.rollouts) for s in served] == [10, 10, 1000]
    assert {r.verdict for r in served[-1].rollouts} == {"hold"}  # every gate read, no traffic
    # States: the set of flags and a pipeline; aggregates: one pipeline of script calls,
    # each checking the partitions it reads.
    assert for_10 == for_1000 == 3
