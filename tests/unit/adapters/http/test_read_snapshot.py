"""The read API's snapshots and rate: one build however many readers, ETags, 429s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
from aiohttp import web

from controller.adapters.http.read_routes import RolloutRoutes
from controller.adapters.http.read_snapshot import ReadSnapshot
from controller.core.common.errors import StoreError
from controller.core.reading.views import RolloutStatus
from tests.support.app_client import app_client


class Builds:
    """A body source whose builds are counted, held at a gate, and fail on demand."""

    def __init__(self) -> None:
        self.count, self.fail = 0, False
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> bytes:
        self.count += 1
        await self.gate.wait()
        if self.fail:
            raise StoreError("redis down")
        return orjson.dumps({"build": self.count})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_readers_arriving_during_a_build_share_it() -> None:
    builds = Builds()
    snapshot = ReadSnapshot(builds, max_age=1.0)
    builds.gate.clear()
    readers = [asyncio.create_task(snapshot.get()) for _ in range(16)]
    await asyncio.sleep(0)
    builds.gate.set()
    served = await asyncio.gather(*readers)
    assert builds.count == 1
    assert {s.body for s in served} == {b'{"build":1}'}


@pytest.mark.parametrize(
    ("age", "max_age", "builds"),
    [
        (0.0, 1.0, 1),  # fresh: the one held
        (0.99, 1.0, 1),
        (1.0, 1.0, 2),  # as old as allowed: built again
        (5.0, 1.0, 2),
        (0.0, 0.0, 2),  # no age allowed: every request builds
    ],
)
async def test_an_answer_is_built_again_once_it_is_max_age_old(
    age: float, max_age: float, builds: int
) -> None:
    source, clock = Builds(), Clock()
    snapshot = ReadSnapshot(source, max_age=max_age, clock=clock)
    first = await snapshot.get()
    clock.now += age
    again = await snapshot.get()
    assert source.count == builds
    assert (again.etag == first.etag) == (builds == 1)


async def test_a_failed_build_is_not_held_and_the_next_request_builds_again() -> None:
    source = Builds()
    snapshot = ReadSnapshot(source, max_age=60)
    source.fail = True
    with pytest.raises(StoreError):
        await snapshot.get()
    source.fail = False
    assert (await snapshot.get()).body == b'{"build":2}'


async def test_a_reader_that_goes_away_does_not_cancel_the_build_others_wait_for() -> None:
    source = Builds()
    snapshot = ReadSnapshot(source, max_age=60)
    source.gate.clear()
    leaving, staying = (asyncio.create_task(snapshot.get()) for _ in range(2))
    await asyncio.sleep(0)
    leaving.cancel()
    source.gate.set()
    assert (await staying).body == b'{"build":1}'
    assert source.count == 1


@asynccontextmanager
async def rollouts_served(rate: float, limited: list[int]) -> AsyncIterator[httpx.AsyncClient]:
    async def status(_flag: str | None) -> list[RolloutStatus]:
        return []

    routes = RolloutRoutes(
        status=status,
        history=None,
        max_age=60,
        token=None,
        requests_per_second=rate,
        count_limited=lambda: limited.append(1),
    )
    app = web.Application()
    routes.add_to(app.router)
    async with app_client(app) as client:
        yield client


async def test_rollouts_carry_an_etag_and_answer_304_when_it_matches() -> None:
    async with rollouts_served(100, []) as client:
        first = await client.get("/rollouts")
        again = await client.get("/rollouts", headers={"If-None-Match": first.headers["ETag"]})
    assert first.status_code == 200
    assert first.json() == {"rollouts": []}
    assert again.status_code == 304


async def test_a_client_past_its_read_rate_is_answered_429_with_retry_after() -> None:
    limited: list[int] = []
    async with rollouts_served(2, limited) as client:
        answers = [await client.get(path) for path in ("/rollouts", "/rollouts", "/rollouts/f")]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1].headers["Retry-After"] == "1"
    assert "read rate" in answers[-1].json()["error"]
    assert limited == [1]
