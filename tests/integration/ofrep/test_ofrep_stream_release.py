"""OFREP event streams give back what they hold, over real Redis and real sockets: the
streams of clients that were reset are free for their reconnects at once, and clients
that never read (or read a byte at a time) are closed within the streams' lifetime while
the others keep hearing every kill (and resume across the ends of their own streams,
missing none), and a client whose buffers are full is dropped once a write has waited
the write bound."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from controller.adapters.ofrep import StreamBounds
from controller.adapters.ofrep.streams import RESUME_MS
from controller.adapters.redis.client import connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.rollouts.rollout import Phase
from controller.ports import StateWrite
from controller.settings import RedisSettings
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store
from tests.support.clients.raw_streams import (
    NonReader,
    RawStream,
    raw_stream,
    request,
    wait_ended,
)
from tests.support.clients.sse import sse
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration]

FLAG = "ofrep.released"
CLIENTS = 300
RECONNECT_DEADLINE = 10.0
"""How soon every reset client must have its stream again: well inside the 15 s a dead
stream held its slot for (until the next heartbeat's write failed), and generous for a
busy machine (the bench measures the 2 s goal: docs/benchmarks.md)."""
LIFETIME = 3.0
"""The streams' lifetime in the test of non-readers: the bound they are closed within."""
SLACK = 5.0
"""What a busy machine may add to that bound (the last write, the sweep, the scheduler)."""


async def served(
    redis_url: str, redis_namespace: str, bounds: StreamBounds
) -> AsyncIterator[tuple[str, RolloutStore]]:
    async with connect(RedisSettings(url=redis_url)) as client:
        states = await store(client, redis_namespace, [flag_rollout(FLAG, 50.0)])
        async with ofrep_server(states, streams=bounds, max_connections=1_000) as base:
            yield base, states


@pytest.fixture
async def crowded(redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[str, RolloutStore]]:
    """A server whose one client (the loopback address) may hold exactly ``CLIENTS`` streams,
    with the default 15 s heartbeat: a stream held until its next write blocks a reconnect."""
    bounds = StreamBounds(max_streams=CLIENTS + 50, per_client=CLIENTS)
    async for pair in served(redis_url, redis_namespace, bounds):
        yield pair


@pytest.fixture
async def short_lived(
    redis_url: str, redis_namespace: str
) -> AsyncIterator[tuple[str, RolloutStore]]:
    bounds = StreamBounds(
        max_streams=100, per_client=100, heartbeat_seconds=1, lifetime_seconds=LIFETIME
    )
    async for pair in served(redis_url, redis_namespace, bounds):
        yield pair


@pytest.fixture
async def one_each(redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[str, RolloutStore]]:
    """One stream per client, a heartbeat every 10 ms (bytes keep coming), a 1 s write bound
    and a lifetime far longer than the test."""
    bounds = StreamBounds(
        max_streams=10, per_client=1, heartbeat_seconds=0.01, write_seconds=1, lifetime_seconds=600
    )
    async for pair in served(redis_url, redis_namespace, bounds):
        yield pair


async def flip(states: RolloutStore, *, killed: bool) -> None:
    """Kill (or revive) the flag in the store."""
    loaded = await states.load(FLAG)
    assert loaded.rollout is not None
    phase = Phase.KILLED if killed else Phase.RUNNING
    update = {"phase": phase, "flag_version": loaded.rollout.flag_version + 1}
    await states.save(
        FLAG, StateWrite(rev=loaded.rev, rollout=loaded.rollout.model_copy(update=update))
    )


async def test_streams_of_reset_clients_are_free_for_their_reconnects_at_once(
    crowded: tuple[str, RolloutStore],
) -> None:
    base, _ = crowded
    where = urlsplit(base)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    streams = await asyncio.gather(*(raw_stream(host, port) for _ in range(CLIENTS)))
    assert {s.status for s in streams} == {200}
    assert (await raw_stream(host, port)).status == 429, "the client's streams are all held"

    async def reconnect() -> tuple[float, int]:
        """Ask again until given a stream: when, and how many refusals first."""
        refused = 0
        while (again := await raw_stream(host, port)).status != 200:
            refused += 1
            await asyncio.sleep(0.05)
        reconnected.append(again)
        return time.monotonic(), refused

    reconnected: list[RawStream] = []
    for stream in streams:
        stream.reset()
    reset_at = time.monotonic()
    async with asyncio.timeout(RECONNECT_DEADLINE):
        answers = await asyncio.gather(*(reconnect() for _ in range(CLIENTS)))
    slowest = max(at for at, _ in answers) - reset_at
    print(
        f"\n{CLIENTS} streams reset, all reconnected in {slowest:.2f} s"
        f" ({sum(r for _, r in answers)} refusals on the way)"
    )
    for stream in reconnected:
        stream.writer.close()


async def follow(url: str, heard: asyncio.Queue[str], opened: list[float]) -> None:
    """A client that reads its stream, and resumes from the last event it read whenever the
    server ends it (as ``EventSource`` does): every event's id goes to ``heard``."""
    last: str | None = None
    async with httpx.AsyncClient(timeout=30) as client:
        while True:
            headers = {} if last is None else {"Last-Event-ID": last}
            async with sse(client, url, headers) as stream:
                assert stream.response.status_code == 200, stream.response.status_code
                opened.append(time.monotonic())
                while (item := await stream.next(timeout=60)).kind != "end":
                    if item.kind == "event":
                        assert item.id is not None
                        last = item.id
                        heard.put_nowait(item.id)
            await asyncio.sleep(RESUME_MS / 1000)


def read_slowly(client: NonReader, stop: threading.Event) -> None:
    """Read ``client``'s stream a byte every 0.2 s until it ends or ``stop``."""
    client.sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if not client.sock.recv(1):
                return
        except TimeoutError:
            continue
        except OSError:
            return
        time.sleep(0.2)


async def test_clients_that_never_read_are_closed_within_the_lifetime_and_readers_hear_all(
    short_lived: tuple[str, RolloutStore],
) -> None:
    base, states = short_lived
    where = urlsplit(base)
    host, port = where.hostname or "127.0.0.1", where.port or 80

    def open_non_readers(count: int) -> list[tuple[NonReader, float]]:
        return [NonReader.opened(host, port) for _ in range(count)]

    silent = await asyncio.to_thread(open_non_readers, 20)
    stop = threading.Event()
    # A quarter of them read, a byte every 0.2 s: slow readers are bound the same way.
    slow = [asyncio.to_thread(read_slowly, client, stop) for client, _ in silent[::4]]
    heard: list[asyncio.Queue[str]] = [asyncio.Queue() for _ in range(2)]
    opened: list[list[float]] = [[], []]
    url = f"{base}/ofrep/v1/events"
    followers = [asyncio.create_task(follow(url, q, o)) for q, o in zip(heard, opened, strict=True)]
    clients = [client for client, _ in silent]
    watching = asyncio.create_task(asyncio.to_thread(wait_ended, clients, 2 * LIFETIME + SLACK))
    flips = 0
    try:
        await eventually(lambda: all(opened), timeout=30, what="the readers' streams open")
        # Kill and revive until the non-readers are watched out and each reader has had its
        # stream ended and resumed at least once: each change must reach every reader.
        while not watching.done() or min(len(o) for o in opened) < 2:
            await flip(states, killed=flips % 2 == 0)
            flips += 1
            for queue in heard:
                await asyncio.wait_for(queue.get(), 30)
        ended = await watching
    finally:
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        stop.set()
        await asyncio.gather(*slow)
        for client in clients:
            client.close()
    still_open = sum(at is None for at in ended)
    assert still_open == 0, f"{still_open} of {len(silent)} non-readers still open"
    held = max(at - since for at, (_, since) in zip(ended, silent, strict=True) if at is not None)
    print(f"\nnon-readers closed at most {held:.2f} s after they opened; {flips} changes heard")
    assert held <= LIFETIME + SLACK
    assert all(q.empty() for q in heard), "a reader heard a change twice"


async def test_a_client_that_stops_taking_bytes_is_dropped_once_a_write_waits_too_long(
    one_each: tuple[str, RolloutStore],
) -> None:
    base, _ = one_each
    where = urlsplit(base)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connecting: its window
    stalled.connect((where.hostname, where.port))
    stalled.sendall(request("/ofrep/v1/events"))  # and never reads
    url = f"{base}/ofrep/v1/events"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            async with sse(client, url) as refused:
                assert refused.response.status_code == 429, "the stalled client holds no stream"

            async def given_back() -> bool:
                async with sse(client, url) as again:
                    return again.response.status_code == 200

            # Its buffers fill in a second or two; then a write waits, and 1 s later it is cut
            # (the server's send buffer could otherwise take megabytes of heartbeats).
            started = time.monotonic()
            assert await eventually(given_back, timeout=30, what="the stalled client's stream")
        print(
            f"\nthe stalled client's stream was given back after {time.monotonic() - started:.1f} s"
        )
    finally:
        stalled.close()
