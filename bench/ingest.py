"""Ingest throughput and memory, against a bare consume loop over the same events.

Produces N mixed events (exposures, requests, conversions over F flags and U
units) to a fresh topic, then measures in one run:

(a) raw: an aiokafka consumer reading every event and JSON-decoding it with
    the library the controller decodes with (msgspec), nothing else;
(b) controller: the real daemon (``rollout-controller run``) from its first
    flush until Redis holds all N events, and its peak RSS.

The raw loop is also run with the daemon's garbage-collector settings
(``raw_tuned_gc_eps``), so that the ratio is not flattered by tuning the
baseline lacks.

Both sides are timed over the same mid-run window: from the moment
``--window``'s first fraction of the N events has been consumed (raw) or
flushed to Redis (controller) to the moment its second fraction has (by
default 20% to 90%). Start-up, group join, claiming and the ramp-up of the
first batches fall before the window, the tail (the last partial batches,
the final polls) after it, so both rates are steady-state rates. The daemon's
progress is polled in Redis and the crossing times interpolated between
polls. The two sides are measured alternately ``--rounds`` times (default 5),
with one more raw run after the last controller run, so that every controller
run is bracketed by a raw run before and after it. Each round's ratio is its
controller rate over the geometric mean of the two raw rates around it: on a
shared machine the speed a process gets drifts over the minute a round takes
(other work comes and goes), and a ratio against the raw run before alone
carries that drift into the round ratios, which then fall or rise round after
round. Against the raw runs on either side, a drift that is steady over the
round cancels. ``ratio`` is the median of the round ratios and
``ratio_spread`` how far the rounds stray from it; ``load`` is the machine's
one-minute load average at the start of each round.

Wall-clock rates on a shared machine move with whatever else runs, so the
same window is also timed in CPU time: the raw loop's own process time and
the daemon's (user + system, read with the progress polls). ``cpu_ratio``
is the median over rounds of the raw loop's CPU nanoseconds per event (the
geometric mean of the runs around the round, as above) over the daemon's: how
the daemon's cost per event compares with the bare loop's, which load on
other cores moves less. The last line printed is one JSON
object.

    python bench/ingest.py [--events 1000000] [--flags 20] [--units 200000]
        [--rounds 5] [--window 0.2 0.9]

Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts the embedded
broker and a private redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import msgspec
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.controller_process import ControllerProcess, controller_env
from tests.reference import encode, make_event
from tests.services import resolve_kafka, resolve_redis

PARTITIONS = 4


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def make_values(n: int, flags: int, units: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    events = (
        make_event(rng, i, flags=flags, units=units, versions=1, error_rate=0.02) for i in range(n)
    )
    return [(e["unit"].encode(), encode(e)) for e in events]


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> float:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        for index, (key, value) in enumerate(values):
            await producer.send(topic, key=key, value=value)
            if index % 100_000 == 0:
                progress(f"produced {index:,}/{len(values):,}")
        await producer.flush()
    finally:
        await producer.stop()
    return len(values) / (time.perf_counter() - started)


class Window:
    """How long, in wall-clock and CPU time, a count takes to go from ``lo`` to ``hi``.

    Crossings are interpolated between observations.
    """

    def __init__(self, n: int, window: tuple[float, float]) -> None:
        self.lo, self.hi = round(n * window[0]), round(n * window[1])
        self._last: tuple[int, float, float] | None = None
        self._start: tuple[float, float] | None = None
        self._end: tuple[float, float] | None = None

    def observe(self, count: int, at: float, cpu: float) -> None:
        """The count reached ``count`` by wall time ``at``, having used ``cpu`` seconds."""
        if self._last is not None:
            if self._start is None:
                self._start = self._crossing(self.lo, count, at, cpu)
            if self._end is None:
                self._end = self._crossing(self.hi, count, at, cpu)
        self._last = (count, at, cpu)

    def _crossing(self, mark: int, count: int, at: float, cpu: float) -> tuple[float, float] | None:
        assert self._last is not None
        was, at_before, cpu_before = self._last
        if not was < mark <= count:
            return None
        share = (mark - was) / (count - was)
        return at_before + (at - at_before) * share, cpu_before + (cpu - cpu_before) * share

    def rate(self) -> float:
        """Events per second of wall-clock time within the window."""
        assert self._start is not None
        assert self._end is not None
        return (self.hi - self.lo) / (self._end[0] - self._start[0])

    def cpu_ns(self) -> float:
        """CPU nanoseconds per event within the window."""
        assert self._start is not None
        assert self._end is not None
        return (self._end[1] - self._start[1]) * 1e9 / (self.hi - self.lo)


def around(runs: list[tuple[float, float]], round_: int, field: int) -> float:
    """The geometric mean of ``field`` of the raw runs before and after round ``round_``."""
    return math.sqrt(runs[round_][field] * runs[round_ + 1][field])


async def raw_loop(
    bootstrap: str, topic: str, n: int, window: tuple[float, float], *, tuned_gc: bool = False
) -> tuple[float, float]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    decode = msgspec.json.decode
    if tuned_gc:  # the daemon's own collector settings (controller.daemon.running.wiring)
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, *gc.get_threshold()[1:])
    await consumer.start()
    timed = Window(n, window)
    seen = 0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    decode(record.value)
                seen += len(records)
            timed.observe(seen, time.perf_counter(), time.process_time())
    finally:
        await consumer.stop()
        if tuned_gc:
            gc.set_threshold(700, *gc.get_threshold()[1:])
            gc.unfreeze()
    return timed.rate(), timed.cpu_ns()


async def controller_run(
    bootstrap: str, redis_url: str, topic: str, n: int, window: tuple[float, float], workdir: Path
) -> tuple[float, float, float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = controller_env(bootstrap=bootstrap, redis_url=redis_url, prefix=prefix, events=topic)
    env["RC_INGEST__MAX_BATCH_RECORDS"] = os.environ.get("BENCH_BATCH", "5000")
    env["RC_LOG__LEVEL"] = "warning"
    daemon = ControllerProcess(env=env, log_path=workdir / "controller.log").start()
    settings = RedisSettings(url=redis_url, key_prefix=prefix)
    peak = 0
    try:
        process = psutil.Process(daemon.pid)
        async with connect(settings) as client:
            store = RedisAggregateStore(client, settings=settings, topic=topic)
            timed = Window(n, window)
            done = 0
            last_report = time.monotonic()
            while done < n:
                peak = max(peak, process.memory_info().rss)
                offsets = [await store.offset(p) for p in range(PARTITIONS)]
                done = sum(o or 0 for o in offsets)
                cpu = process.cpu_times()
                timed.observe(done, time.perf_counter(), cpu.user + cpu.system)
                if time.monotonic() - last_report > 5:
                    progress(f"controller flushed {done:,}/{n:,}")
                    last_report = time.monotonic()
                if not daemon.running:
                    raise RuntimeError(f"controller died:\n{daemon.log_text()[-2000:]}")
                await asyncio.sleep(0.02)
            keys = [k async for k in client.scan_iter(match=f"*{prefix}*")]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
    finally:
        daemon.terminate()
    return timed.rate(), timed.cpu_ns(), peak / 2**20


async def main(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="rc-bench-"))
    with ExitStack() as stack:
        bootstrap, stop_kafka, kafka_desc = resolve_kafka(workdir)
        stack.callback(stop_kafka)
        redis_url, stop_redis, redis_desc = resolve_redis(workdir)
        stack.callback(stop_redis)
        progress(f"broker: {kafka_desc}; redis: {redis_desc}")
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        values = make_values(args.events, args.flags, args.units)
        produce_eps = await produce(bootstrap, topic, values)
        del values
        progress(f"produced {args.events:,} events at {produce_eps:,.0f}/s")
        window = (args.window[0], args.window[1])
        raw: list[tuple[float, float]] = []
        raw_tuned: list[tuple[float, float]] = []
        ctl: list[tuple[float, float]] = []
        peaks: list[float] = []
        load: list[float] = []

        async def raw_pair() -> None:
            raw.append(await raw_loop(bootstrap, topic, args.events, window))
            raw_tuned.append(await raw_loop(bootstrap, topic, args.events, window, tuned_gc=True))

        # Alternate the two, a raw run on either side of each controller run,
        # so drift in the machine's speed hits both alike.
        for round_ in range(args.rounds):
            load.append(os.getloadavg()[0])
            if round_ == 0:
                await raw_pair()
            progress(
                f"round {round_ + 1} (load {load[-1]:.1f}): raw {raw[-1][0]:,.0f}/s, raw with "
                f"the daemon's gc settings {raw_tuned[-1][0]:,.0f}/s; controller..."
            )
            eps, cpu_ns, peak = await controller_run(
                bootstrap, redis_url, topic, args.events, window, workdir
            )
            ctl.append((eps, cpu_ns))
            peaks.append(peak)
            await raw_pair()
            progress(
                f"round {round_ + 1}: controller {eps:,.0f}/s (ratio "
                f"{eps / around(raw, round_, 0):.3f}), {cpu_ns:,.0f} CPU ns/event (raw "
                f"{around(raw, round_, 1):,.0f}), peak RSS {peak:.0f} MB"
            )
    rounds = range(args.rounds)
    ratios = [ctl[i][0] / around(raw, i, 0) for i in rounds]
    cpu_ratios = [around(raw, i, 1) / ctl[i][1] for i in rounds]
    tuned_ratios = [ctl[i][0] / around(raw_tuned, i, 0) for i in rounds]
    ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    return {
        "events": args.events,
        "flags": args.flags,
        "units": args.units,
        "rounds": args.rounds,
        "window": list(window),
        "load": [round(x, 1) for x in load],
        "raw_eps": round(statistics.median(r[0] for r in raw)),
        "controller_eps": round(statistics.median(c[0] for c in ctl)),
        "ratio": round(ratio, 3),
        "ratio_spread": round(max(abs(r - ratio) for r in ratios), 3),
        "round_ratios": [round(r, 3) for r in ratios],
        "raw_cpu_ns": round(statistics.median(r[1] for r in raw)),
        "controller_cpu_ns": round(statistics.median(c[1] for c in ctl)),
        "cpu_ratio": round(cpu_ratio, 3),
        "cpu_ratio_spread": round(max(abs(r - cpu_ratio) for r in cpu_ratios), 3),
        "round_cpu_ratios": [round(r, 3) for r in cpu_ratios],
        "raw_tuned_gc_eps": round(statistics.median(r[0] for r in raw_tuned)),
        "ratio_vs_tuned_gc": round(statistics.median(tuned_ratios), 3),
        "peak_rss_mb": round(max(peaks), 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to produce")
    parser.add_argument("--flags", type=int, default=20, help="distinct flags")
    parser.add_argument("--units", type=int, default=200_000, help="distinct units")
    parser.add_argument("--rounds", type=int, default=5, help="raw/controller pairs")
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(0.2, 0.9),
        metavar=("FROM", "TO"),
        help="the fractions of the events between which both sides are timed",
    )
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
