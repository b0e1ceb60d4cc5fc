"""OFREP evaluation over HTTP: how fast the controller answers, against the SDK's own rate.

Stores ``--flags`` rollouts (100 by default) in a real Redis (REDIS_URL, a
container, or a test-owned redis-server), serves them from the daemon's HTTP
server with its OFREP endpoints in a child process, and drives it from this
process on loopback with ``--concurrency`` requests in flight (aiohttp, one
connection each, kept alive; the server has no per-client rate limit, which
``http.ofrep_requests_per_second`` would set on the daemon's one loopback client):

* single: ``POST /ofrep/v1/evaluate/flags/{key}``, one flag for one unit per
  request: evaluations per second, and the latency's p50 and p99;
* bulk: ``POST /ofrep/v1/evaluate/flags``, every flag for one unit per
  request: requests and flag evaluations per second, p50 and p99;
* revalidation: the same bulk request with the ETag of its last answer
  (``If-None-Match``), answered 304;
* for each of the three, the server process's CPU time per request and the
  requests one core of it answers per second (its CPU time over the requests):
  what the server can take when the load generator, which shares the machine,
  is not what limits it;
* streams: ``--streams`` event streams (1,000) held open on
  ``GET /ofrep/v1/events``; then ``--kills`` times a flag is killed (or
  revived) in Redis, and each stream's ``refetchEvaluation`` is timed from
  the write's return: the latency's p50 and p99 over every stream and round,
  and the server's resident memory per open stream (its RSS before and
  after they opened, over their number);
* releasing streams, on a second server whose one client (the loopback
  address) may hold exactly ``--resets`` streams (1,000), with the default
  15 s heartbeat: ``--resets`` streams are opened, all reset at once, and
  each asks again (every 50 ms while refused) until it has a stream: the
  time until the last has one (the goal is 2 s);
* non-readers, on the same server, whose streams last ``--lifetime`` s
  (``http.ofrep_stream_max_seconds``, 15 s here): ``--non-readers`` (200)
  clients open a stream and never read it, ``--readers`` (50) read theirs
  and resume from their last event whenever the server ends it (as
  ``EventSource`` does); a flag is killed and revived until every
  non-reader is closed, and each change is timed to every reader: how long
  the non-readers were held (the goal: within the lifetime) and the
  readers' p50 and p99 (the goal: p99 within 250 ms).

Baseline, measured in the same run: the SDK's in-process evaluation
(``FlagBook.arm``, the same evaluation function) over the same states and
units, in evaluations per second on this process. The answers of the timed
single evaluations are checked against it (every variant must be the SDK's
arm). The load generator is Python too, so on a small machine it shares the
CPU with the server: the figures are a floor. The last line is one JSON object.

    python bench/ofrep.py [--requests 20000] [--bulk 1000] [--concurrency 32] [--streams 1000]
        [--resets 1000] [--non-readers 200] [--readers 50] [--lifetime 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import psutil

from controller.adapters.ofrep import StreamBounds
from controller.adapters.ofrep.streams import RESUME_MS
from controller.adapters.redis.client import RedisClient, connect
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.rollouts.rollout import Phase
from controller.core.wire.messages import FlagState
from controller.daemon.serving.read_worker import flag_states
from controller.ports import StateWrite
from controller.sdk.flags import FlagBook
from controller.settings import RedisSettings
from tests.support.backing.services import resolve_redis
from tests.support.clients.ofrep import flag_rollout, ofrep_server, store
from tests.support.clients.raw_streams import NonReader, RawStream, raw_stream, wait_ended

UNITS = [f"user-{i}" for i in range(10_000)]


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


STREAMS = StreamBounds(max_streams=5_000, per_client=5_000)


def serve(
    redis_url: str, prefix: str, bounds: StreamBounds, ready: Event, stop: Event, port: Any
) -> None:
    """The child: the HTTP server with OFREP over the stored states, until ``stop``."""

    async def run() -> None:
        async with connect(RedisSettings(url=redis_url)) as client:
            states = RolloutStore(client, settings=RedisSettings(key_prefix=prefix))
            async with ofrep_server(states, streams=bounds, max_connections=10_000) as base:
                port.value = int(base.rsplit(":", 1)[1])
                ready.set()
                await asyncio.to_thread(stop.wait)

    asyncio.run(run())


async def drive(
    count: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run ``call(0..count-1)`` with ``concurrency`` in flight: seconds taken, latencies (ms)."""
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            i, next_index = next_index, next_index + 1
            started = time.perf_counter()
            await call(i)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def figures(count: int, seconds: float, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "per_second": round(count / seconds, 1),
        "p50_ms": round(ordered[len(ordered) // 2], 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def sdk_rate(book: FlagBook, flags: list[str], evaluations: int) -> float:
    """The SDK's in-process evaluations per second over the same flags and units (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(evaluations):
            book.arm(flags[i % len(flags)], UNITS[i % len(UNITS)])
        best = min(best, time.perf_counter() - started)
    return evaluations / best


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        redis_url, stop_redis, description = resolve_redis(Path(workdir))
        progress(f"redis: {description}")
        try:
            return await measure(args, redis_url)
        finally:
            stop_redis()


async def measure(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    async with connect(RedisSettings(url=redis_url)) as client:
        return await measure_with(args, redis_url, client)


async def measure_with(
    args: argparse.Namespace, redis_url: str, client: RedisClient
) -> dict[str, Any]:
    prefix = f"bench-ofrep-{uuid.uuid4().hex[:8]}:"
    flags = [f"bench.flag-{i:03d}" for i in range(args.flags)]
    states = await store(
        client, prefix, [flag_rollout(f, 1 + (i * 7) % 99) for i, f in enumerate(flags)]
    )
    loaded = await flag_states(states, None)
    book = FlagBook()
    for view in loaded.root:
        book.apply(_state(view.served()))
    progress(f"{len(flags)} flags stored; starting the server")
    async with server_child(redis_url, prefix, STREAMS) as (root, pid):
        server = psutil.Process(pid)
        result = await load(args, f"{root}/ofrep/v1/evaluate/flags", flags, book, server)
        result["streams"] = await streams(args, root, pid, states)
    releasing = StreamBounds(
        max_streams=args.resets + args.non_readers + 2 * args.readers,
        per_client=args.resets,
        lifetime_seconds=args.lifetime,
    )
    progress("starting a server for the release of streams")
    async with server_child(redis_url, prefix, releasing) as (root, pid):
        result["resets"] = await resets(args, root, psutil.Process(pid))
        result["non_readers"] = await non_readers(args, root, states)
    return result


@contextlib.asynccontextmanager
async def server_child(
    redis_url: str, prefix: str, bounds: StreamBounds
) -> AsyncIterator[tuple[str, int]]:
    """The OFREP server in a process of its own: its base URL and process id."""
    spawn = multiprocessing.get_context("spawn")
    ready, stop, port = spawn.Event(), spawn.Event(), spawn.Value("i", 0)
    child = spawn.Process(target=serve, args=(redis_url, prefix, bounds, ready, stop, port))
    child.start()
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the OFREP server did not start")
        assert child.pid is not None
        yield f"http://127.0.0.1:{port.value}", child.pid
    finally:
        stop.set()
        await asyncio.to_thread(child.join, 10)


def cpu_seconds(process: psutil.Process) -> float:
    """A process's CPU time so far (user + system), seconds."""
    times = process.cpu_times()
    return float(times.user + times.system)


async def timed_drive(
    server: psutil.Process, count: int, concurrency: int, call: Callable[[int], Awaitable[None]]
) -> dict[str, float]:
    """:func:`drive`'s figures, and the server's CPU per request and requests per core-second."""
    before = cpu_seconds(server)
    seconds, latencies = await drive(count, concurrency, call)
    used = cpu_seconds(server) - before
    shown = figures(count, seconds, latencies)
    shown["server_cpu_us"] = round(used / count * 1e6, 1)
    shown["per_server_core_second"] = round(count / used, 1) if used > 0 else float("inf")
    return shown


async def load(
    args: argparse.Namespace, base: str, flags: list[str], book: FlagBook, server: psutil.Process
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        wrong = 0

        async def single(i: int) -> None:
            nonlocal wrong
            flag, unit = flags[i % len(flags)], UNITS[i % len(UNITS)]
            body = {"context": {"targetingKey": unit}}
            async with session.post(f"{base}/{flag}", json=body) as answer:
                got = await answer.json()
            wrong += got.get("variant") != book.arm(flag, unit)[0].value

        async def bulk(i: int) -> None:
            body = {"context": {"targetingKey": UNITS[i % len(UNITS)]}}
            async with session.post(base, json=body) as answer:
                got = await answer.json()
            assert len(got["flags"]) == len(flags)

        etags: dict[int, str] = {}
        for i in range(args.concurrency):
            body = {"context": {"targetingKey": UNITS[i]}}
            async with session.post(base, json=body) as answer:
                etags[i] = answer.headers["ETag"]

        async def revalidate(i: int) -> None:
            body = {"context": {"targetingKey": UNITS[i % args.concurrency]}}
            headers = {"If-None-Match": etags[i % args.concurrency]}
            async with session.post(base, json=body, headers=headers) as answer:
                assert answer.status == 304, answer.status

        await drive(1000, args.concurrency, single)  # warm up
        progress(f"single: {args.requests} evaluations, {args.concurrency} in flight")
        one = await timed_drive(server, args.requests, args.concurrency, single)
        progress(f"bulk: {args.bulk} requests of {len(flags)} flags")
        many = await timed_drive(server, args.bulk, args.concurrency, bulk)
        many["flags_per_second"] = round(many["per_second"] * len(flags), 1)
        unchanged = await timed_drive(server, args.bulk, args.concurrency, revalidate)
    sdk = sdk_rate(book, flags, 200_000)
    ratio = one["per_second"] / sdk
    print(
        f"{'path':<22} {'per s':>12} {'p50 ms':>9} {'p99 ms':>9}"
        f" {'server µs':>10} {'per core s':>11}"
    )
    print(f"{'SDK in process':<22} {sdk:>12.0f} {'':>9} {'':>9} {'':>10} {'':>11}")
    for name, f in (
        ("OFREP single", one),
        ("OFREP bulk (requests)", many),
        ("bulk 304", unchanged),
    ):
        print(
            f"{name:<22} {f['per_second']:>12.0f} {f['p50_ms']:>9.2f} {f['p99_ms']:>9.2f}"
            f" {f['server_cpu_us']:>10.1f} {f['per_server_core_second']:>11.0f}"
        )
    print(f"bulk: {many['flags_per_second']:.0f} flag evaluations/s; single/SDK: {ratio:.5f}")
    return {
        "flags": len(flags),
        "concurrency": args.concurrency,
        "sdk_evaluations_per_second": round(sdk, 1),
        "single": one,
        "bulk": many,
        "bulk_304": unchanged,
        "single_to_sdk": round(ratio, 6),
        "wrong_variants": wrong,
    }


def rss_kib(pid: int) -> int:
    """A process's resident memory (Linux), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def streams(
    args: argparse.Namespace, root: str, pid: int, states: RolloutStore
) -> dict[str, Any]:
    """Kill → client-notified latency over ``--streams`` open streams, and memory per stream."""
    progress(f"streams: opening {args.streams}")
    before = rss_kib(pid)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        arrivals: list[asyncio.Queue[float]] = [asyncio.Queue() for _ in range(args.streams)]
        opened = [asyncio.Event() for _ in range(args.streams)]

        async def listen(i: int) -> None:
            async with session.get(f"{root}/ofrep/v1/events") as answer:
                assert answer.status == 200, answer.status
                opened[i].set()
                async for line in answer.content:
                    if line.startswith(b"data:"):
                        arrivals[i].put_nowait(time.monotonic())

        listeners = [asyncio.create_task(listen(i)) for i in range(args.streams)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 120)
        await asyncio.sleep(1)  # the server's side of the last ones settles
        per_stream = (rss_kib(pid) - before) * 1024 / args.streams
        latencies: list[float] = []
        for round_ in range(args.kills):
            written = await flip(states, "bench.flag-000", killed=round_ % 2 == 0)
            got = await asyncio.gather(*(asyncio.wait_for(q.get(), 30) for q in arrivals))
            latencies.extend((at - written) * 1000 for at in got)
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    ordered = sorted(latencies)
    result = {
        "open": args.streams,
        "kills": args.kills,
        "p50_ms": round(ordered[len(ordered) // 2], 1),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)], 1),
        "max_ms": round(ordered[-1], 1),
        "bytes_per_stream": round(per_stream),
    }
    print(
        f"streams: {args.streams} open, kill -> notified p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms; {per_stream / 1024:.1f} KiB per stream (server RSS)"
    )
    return result


async def resets(args: argparse.Namespace, root: str, server: psutil.Process) -> dict[str, Any]:
    """Open ``--resets`` streams of one client, reset them all, and time their reconnects
    (and the CPU the server and this process spent on them: on a small machine the two
    share it, and it, not a stream held, sets the time)."""
    host, port = "127.0.0.1", int(root.rsplit(":", 1)[1])
    progress(f"resets: opening {args.resets} streams of one client")
    opened = await asyncio.wait_for(
        asyncio.gather(*(raw_stream(host, port) for _ in range(args.resets))), 120
    )
    assert {s.status for s in opened} == {200}, "a stream was refused"
    reconnected: list[RawStream] = []

    async def reconnect() -> tuple[float, int]:
        """Ask again until given a stream: when, and how many refusals first."""
        refused = 0
        while (again := await raw_stream(host, port)).status != 200:
            refused += 1
            await asyncio.sleep(0.05)
        reconnected.append(again)
        return time.monotonic(), refused

    server_cpu, own_cpu = cpu_seconds(server), time.process_time()
    for stream in opened:
        stream.reset()
    reset_at = time.monotonic()
    answers = await asyncio.wait_for(
        asyncio.gather(*(reconnect() for _ in range(args.resets))), 120
    )
    server_cpu, own_cpu = cpu_seconds(server) - server_cpu, time.process_time() - own_cpu
    for stream in reconnected:
        stream.writer.close()
    ordered = sorted(at - reset_at for at, _ in answers)
    result = {
        "clients": args.resets,
        "reconnected": len(reconnected),
        "p50_s": round(ordered[len(ordered) // 2], 3),
        "last_s": round(ordered[-1], 3),
        "refusals": sum(r for _, r in answers),
        "within_2_s": ordered[-1] <= 2.0,
        "server_cpu_s": round(server_cpu, 2),
        "client_cpu_s": round(own_cpu, 2),
    }
    print(
        f"resets: {args.resets} streams of one client reset at once; all had a stream again "
        f"within {result['last_s']} s (p50 {result['p50_s']} s), {result['refusals']} "
        f"refusals on the way; CPU: server {result['server_cpu_s']} s, "
        f"clients {result['client_cpu_s']} s"
    )
    return result


async def non_readers(args: argparse.Namespace, root: str, states: RolloutStore) -> dict[str, Any]:
    """``--non-readers`` streams never read beside ``--readers`` that read: kill -> reader
    latency while the non-readers are held, and how long they are held."""
    host, port = "127.0.0.1", int(root.rsplit(":", 1)[1])
    progress(f"non-readers: {args.non_readers} never read, {args.readers} read")

    def open_silent() -> list[tuple[NonReader, float]]:
        return [NonReader.opened(host, port) for _ in range(args.non_readers)]

    silent = await asyncio.to_thread(open_silent)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        heard: list[asyncio.Queue[float]] = [asyncio.Queue() for _ in range(args.readers)]
        streams_opened = [0] * args.readers

        async def follow(i: int) -> None:
            last: str | None = None
            while True:
                headers = {} if last is None else {"Last-Event-ID": last}
                async with session.get(f"{root}/ofrep/v1/events", headers=headers) as answer:
                    assert answer.status == 200, answer.status
                    streams_opened[i] += 1
                    async for line in answer.content:
                        if line.startswith(b"id: "):
                            last = line[4:].strip().decode()
                        elif line.startswith(b"data:"):
                            heard[i].put_nowait(time.monotonic())
                await asyncio.sleep(RESUME_MS / 1000)

        readers = [asyncio.create_task(follow(i)) for i in range(args.readers)]
        try:
            latencies, held, changes = await _kill_until_closed(args, states, silent, heard)
        finally:
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for client, _ in silent:
                client.close()
    ordered = sorted(latencies)
    result = {
        "non_readers": args.non_readers,
        "readers": args.readers,
        "lifetime_s": args.lifetime,
        "closed": len(held),
        "held_max_s": round(max(held), 2) if held else None,
        "all_closed_within_lifetime": len(held) == args.non_readers and max(held) <= args.lifetime,
        "changes": changes,
        "reader_streams": sum(streams_opened),
        "p50_ms": round(ordered[len(ordered) // 2], 1),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)], 1),
        "max_ms": round(ordered[-1], 1),
        "p99_within_250_ms": ordered[int(len(ordered) * 0.99)] <= 250,
    }
    print(
        f"non-readers: {len(held)} of {args.non_readers} closed, held at most "
        f"{result['held_max_s']} s (lifetime {args.lifetime} s); {args.readers} readers over "
        f"{changes} changes ({result['reader_streams']} streams, resumed): kill -> notified "
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
    )
    return result


async def _kill_until_closed(
    args: argparse.Namespace,
    states: RolloutStore,
    silent: list[tuple[NonReader, float]],
    heard: list[asyncio.Queue[float]],
) -> tuple[list[float], list[float], int]:
    """Kill and revive, 0.1 to 0.4 s apart, until every non-reader is closed (at most twice
    the lifetime and 10 s more): each change's latency to each reader, how long each
    non-reader was held (from its stream's first bytes to its end, as its kernel saw them),
    and the number of changes."""
    clients = [client for client, _ in silent]
    watching = asyncio.create_task(asyncio.to_thread(wait_ended, clients, 2 * args.lifetime + 10))
    latencies: list[float] = []
    changes = 0
    rng = random.Random(7)
    while not watching.done():
        written = await flip(states, "bench.flag-000", killed=changes % 2 == 0)
        changes += 1
        got = await asyncio.gather(*(asyncio.wait_for(q.get(), 30) for q in heard))
        latencies.extend((at - written) * 1000 for at in got)
        await asyncio.sleep(rng.uniform(0.1, 0.4))
    ended = await watching
    held = [at - since for at, (_, since) in zip(ended, silent, strict=True) if at is not None]
    return latencies, held, changes


async def flip(states: RolloutStore, flag: str, *, killed: bool) -> float:
    """Kill (or revive) ``flag`` in the store; when the write returned."""
    loaded = await states.load(flag)
    assert loaded.rollout is not None
    phase = Phase.KILLED if killed else Phase.RUNNING
    update = {"phase": phase, "flag_version": loaded.rollout.flag_version + 1}
    await states.save(
        flag, StateWrite(rev=loaded.rev, rollout=loaded.rollout.model_copy(update=update))
    )
    return time.monotonic()


def _state(served: dict[str, Any]) -> FlagState:
    return FlagState.model_validate({"v": 1, "type": "flag_state", "id": "s", "ts": 1, **served})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="single evaluations")
    parser.add_argument("--bulk", type=int, default=1_000, help="bulk requests")
    parser.add_argument("--flags", type=int, default=100, help="flags stored and bulk-evaluated")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--streams", type=int, default=1_000, help="event streams held open")
    parser.add_argument("--kills", type=int, default=10, help="changes timed over the streams")
    parser.add_argument(
        "--resets", type=int, default=1_000, help="streams of one client reset and reconnected"
    )
    parser.add_argument(
        "--non-readers", type=int, default=200, help="streams opened and never read"
    )
    parser.add_argument(
        "--readers", type=int, default=50, help="streams read beside the non-readers"
    )
    parser.add_argument(
        "--lifetime", type=float, default=15.0, help="the streams' lifetime for the non-readers"
    )
    result = asyncio.run(main(parser.parse_args()))
    assert result["wrong_variants"] == 0, "an OFREP answer differs from the SDK's arm"
    print(json.dumps(result))
