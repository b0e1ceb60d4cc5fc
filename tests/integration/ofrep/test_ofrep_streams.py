"""OFREP event streams over real Redis and real sockets: a kill reaches a connected client,
a reconnect gets what it missed and no more, and the streams are bounded."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from controller.adapters.ofrep import StreamBounds
from controller.adapters.redis.client import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.rollouts.rollout import Phase
from controller.ports import StateWrite
from controller.settings import RedisSettings
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store
from tests.support.clients.sse import sse
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration]

FLAG, OTHER = "ofrep.streamed", "ofrep.bystander"
BODY = {"context": {"targetingKey": "user-1"}}
BOUNDS = StreamBounds(max_streams=8, per_client=3, heartbeat_seconds=0.3, write_seconds=2)


@pytest.fixture
async def served(redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[str, RolloutStore]]:
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(
            client, redis_namespace, [flag_rollout(FLAG, 50.0), flag_rollout(OTHER, 50.0)]
        )
        async with ofrep_server(states, max_age=30, streams=BOUNDS) as base:
            yield base, states


async def kill(states: RolloutStore, flag: str = FLAG) -> float:
    """Kill ``flag`` in the store; when the write returned (``time.monotonic()``)."""
    loaded = await states.load(flag)
    assert loaded.rollout is not None
    killed = loaded.rollout.model_copy(
        update={"phase": Phase.KILLED, "flag_version": loaded.rollout.flag_version + 1}
    )
    await states.save(flag, StateWrite(rev=loaded.rev, rollout=killed))
    return time.monotonic()


async def announced(client: httpx.AsyncClient, base: str) -> tuple[str, str]:
    """The stream URL a bulk answer announces, and the tag it carries."""
    bulk = await client.post(f"{base}/ofrep/v1/evaluate/flags", json=BODY)
    assert bulk.status_code == 200, bulk.text
    [stream] = bulk.json()["eventStreams"]
    assert stream["type"] == "sse"
    uri = stream["endpoint"]["requestUri"]
    assert uri.startswith("/ofrep/v1/events?flagConfigEtag=")
    return base + uri, uri.rpartition("=")[2]


async def test_a_kill_reaches_a_connected_client_which_then_fetches_it(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    async with httpx.AsyncClient(timeout=30) as client:
        url, tag = await announced(client, base)
        async with sse(client, url) as stream:
            assert stream.response.status_code == 200
            assert stream.response.headers["Content-Type"] == "text/event-stream"
            # Connected, and told nothing: the stream's first heartbeat comes before any event.
            assert (await stream.next()).kind == "retry"
            assert (await stream.next()).kind == "comment"
            killed_at = await kill(states)
            event = await stream.next_event()
        print(f"\nkill -> client notified: {1000 * (event.at - killed_at):.0f} ms")
        assert event.data["type"] == "refetchEvaluation"
        assert event.id == event.data["etag"] != tag
        refetch = await client.post(
            f"{base}/ofrep/v1/evaluate/flags",
            json=BODY,
            params={"flagConfigEtag": event.data["etag"]},
        )
    flags = {f["key"]: f for f in refetch.json()["flags"]}
    assert (flags[FLAG]["reason"], flags[FLAG]["value"]) == ("DISABLED", False)


async def test_a_reconnect_gets_one_event_if_it_missed_a_change_and_none_if_not(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    async with httpx.AsyncClient(timeout=30) as client:
        _, old = await announced(client, base)
        await kill(states)
        # The snapshot is read again when a refetch names a newer tag; here, to learn it.
        _, new = await eventually_new_tag(client, base, old)
        events = f"{base}/ofrep/v1/events"
        async with sse(client, events, headers={"Last-Event-ID": old}) as missed:
            got = await missed.next_event()
            assert (got.id, got.data) == (new, {"type": "refetchEvaluation", "etag": new})
            assert [(await missed.next()).kind for _ in range(2)] == ["comment", "comment"]
        async with sse(client, f"{events}?flagConfigEtag={old}") as by_query:
            assert (await by_query.next_event()).id == new
        async with sse(client, events, headers={"Last-Event-ID": new}) as current:
            kinds = [(await current.next()).kind for _ in range(3)]
        assert kinds == ["retry", "comment", "comment"], "told of a change it had seen"


async def eventually_new_tag(client: httpx.AsyncClient, base: str, old: str) -> tuple[str, str]:
    """The announced stream and tag once they moved past ``old``."""
    async with asyncio.timeout(30):
        while True:
            url, tag = await announced_fresh(client, base, old)
            if tag != old:
                return url, tag


async def announced_fresh(client: httpx.AsyncClient, base: str, old: str) -> tuple[str, str]:
    bulk = await client.post(
        f"{base}/ofrep/v1/evaluate/flags", json=BODY, params={"flagConfigEtag": "x" * 32}
    )
    uri = bulk.json()["eventStreams"][0]["endpoint"]["requestUri"]
    return base + uri, uri.rpartition("=")[2]


async def test_a_stalled_client_does_not_hold_up_a_kill_for_the_others(
    served: tuple[str, RolloutStore],
) -> None:
    base, states = served
    where = urlsplit(base)
    stalled = socket.create_connection((where.hostname, where.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    stalled.sendall(b"GET /ofrep/v1/events HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            url, _ = await announced(client, base)
            async with sse(client, url) as stream:
                await stream.next()
                await kill(states)
                event = await stream.next_event()
        assert event.data["type"] == "refetchEvaluation"
    finally:
        stalled.close()


async def test_streams_are_bounded_per_client_and_refused_with_a_reason(
    served: tuple[str, RolloutStore],
) -> None:
    base, _ = served
    url = f"{base}/ofrep/v1/events"
    async with httpx.AsyncClient(timeout=30) as client:
        async with sse(client, url) as a, sse(client, url) as b, sse(client, url) as c:
            assert {s.response.status_code for s in (a, b, c)} == {200}
            async with sse(client, url) as refused:
                assert refused.response.status_code == 429
                body = (await refused.response.aread()).decode()
                assert "most event streams (3)" in body
                assert refused.response.headers["Retry-After"] == "1"

        async def given_back() -> bool:
            async with sse(client, url) as again:
                return again.response.status_code == 200

        # Closed streams are given back (once the server's next write finds them gone).
        assert await eventually(given_back, timeout=30, what="a stream admitted again")
