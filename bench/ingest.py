"""Ingest throughput and memory, against a bare consume loop over the same events.

Produces N mixed events (exposures, requests, conversions over F flags and U
units) to a fresh topic, then measures in one run:

(a) raw: an aiokafka consumer reading every event and JSON-decoding it with
    the library the controller decodes with (msgspec), nothing else;
(b) controller: the real daemon (``rollout-controller run``) from its first
    flush until Redis holds all N events, and its peak RSS;
(c) Redis's CPU per event over each daemon run, by command (``INFO
    commandstats``: the flush script's own work apart from the commands it
    runs) and of the redis-server process in all (``INFO cpu``), from
    :mod:`redis_cost`.

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
        [--rounds 5] [--window 0.2 0.9] [--broker kafka|tansu|both]
        [--paths events,intake,paced,otlp|all] [--per-record 100] [--paced-rate 5000]

``--paths`` names the ways the events reach Redis: ``events`` (the above, the
default), ``intake`` (the same events through the daemon's ``POST /v1/events``),
``otlp`` (as many events in spans on the OTLP topic) and ``paced`` (the same
events produced straight to the topic at the rate the intake reached),
comma-separated; ``all`` stands for events, intake and otlp. Each path's daemon
runs once a round, and the figures of the paths other than events are under
their own keys (:mod:`ingest_paths`).

    python bench/ingest.py --events 200000 --rounds 1 --paths all,paced

Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts a private
redis-server and the broker the tests choose (the embedded tansu unless
CI=true). ``--broker`` names it instead: Apache Kafka (installed in
``.kafka/``), the embedded tansu, or both, one after the other in one run with
the same events and Redis; the JSON then holds one object per broker.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from following import (  # beside this script
    Window,
    around,
    create_topic,
    event_arguments,
    follow,
    forget,
    progress,
)
from ingest_paths import (  # beside this script
    IngestPath,
    IntakePath,
    OtlpPath,
    PacedPath,
    paths_of,
    print_paths,
)
from redis_cost import per_event, snapshot  # beside this script

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.support.backing.services import (
    apache_kafka_node,
    embedded_tansu,
    resolve_kafka,
    resolve_redis,
)
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.reference import encode, make_event


def make_values(n: int, flags: int, units: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    events = (
        make_event(rng, i, flags=flags, units=units, versions=1, error_rate=0.02) for i in range(n)
    )
    return [(e["unit"].encode(), encode(e)) for e in events]


async def produce(
    bootstrap: str,
    topic: str,
    values: list[tuple[bytes, bytes]],
    configs: dict[str, str] | None = None,
) -> float:
    """Create ``topic`` (with ``configs``, if any) and produce ``values`` to it: events/s."""
    await create_topic(bootstrap, topic, configs)
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
) -> tuple[float, float, float, dict[str, Any]]:
    """The daemon's rate, CPU ns per event and peak RSS in MB; Redis's cost per event."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = controller_env(bootstrap=bootstrap, redis_url=redis_url, prefix=prefix, events=topic)
    env["RC_INGEST__MAX_BATCH_RECORDS"] = max_batch_records()
    env["RC_LOG__LEVEL"] = "warning"
    settings = RedisSettings(url=redis_url, key_prefix=prefix)
    async with connect(settings) as client:
        before = await snapshot(client)
        daemon = ControllerProcess(env=env, log_path=workdir / "controller.log").start()
        try:
            store = RedisAggregateStore(client, settings=settings, topic=topic)
            followed = await follow(daemon, store, n, window)
            cost = per_event(before, await snapshot(client), n)
            await forget(client, prefix)
        finally:
            daemon.terminate()
    return followed.timed.rate(), followed.timed.cpu_ns(), followed.peak_mb, cost


def brokers(choice: str) -> list[str]:
    """The brokers a run measures on, in order ('auto': the one the tests would start)."""
    return ["kafka", "tansu"] if choice == "both" else [choice]


def start_broker(name: str, workdir: Path) -> tuple[str, Callable[[], None], str]:
    if name == "kafka":
        return apache_kafka_node(workdir / "kafka", None)
    if name == "tansu":
        return embedded_tansu(workdir / "tansu")
    return resolve_kafka(workdir)


Measure = Callable[
    [argparse.Namespace, str, str, list[tuple[bytes, bytes]], Path], Awaitable[dict[str, Any]]
]
"""What a bench measures on one broker: ``(args, bootstrap, redis_url, values, workdir)``."""


async def main(args: argparse.Namespace) -> dict[str, Any]:
    return await on_brokers(args, one_broker)


async def on_brokers(args: argparse.Namespace, measure: Measure) -> dict[str, Any]:
    """A private Redis, the events made once, then ``measure`` on each broker of ``--broker``."""
    workdir = Path(tempfile.mkdtemp(prefix="rc-bench-"))
    with ExitStack() as stack:
        redis_url, stop_redis, redis_desc = resolve_redis(workdir)
        stack.callback(stop_redis)
        progress(f"redis: {redis_desc}")
        values = make_values(args.events, args.flags, args.units)
        results: dict[str, Any] = {}
        for name in brokers(args.broker):
            with ExitStack() as on_broker:
                (workdir / name).mkdir(exist_ok=True)
                bootstrap, stop_kafka, kafka_desc = start_broker(name, workdir)
                on_broker.callback(stop_kafka)
                progress(f"broker: {kafka_desc}")
                results[name] = await measure(args, bootstrap, redis_url, values, workdir)
                results[name]["broker"] = kafka_desc
                print_paths(results[name])
    if len(results) == 1:
        return next(iter(results.values()))
    return {"by_broker": results}


async def one_broker(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    values: list[tuple[bytes, bytes]],
    workdir: Path,
) -> dict[str, Any]:
    """Every path's rounds on ``bootstrap``; the others' summaries under their names."""
    window = (args.window[0], args.window[1])
    events = None
    if "events" in args.paths:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        produce_eps = await produce(bootstrap, topic, values)
        progress(f"produced {args.events:,} events at {produce_eps:,.0f}/s")
        events = EventsPath(args, bootstrap, redis_url, topic, workdir)
    others: list[IngestPath] = []
    # Made only where a path needs it: a second list of every event's bytes, alive through
    # the rounds, makes every full collection of the garbage collector walk a million more
    # references, and the bare loop, which runs with Python's default collector settings,
    # paid for it (about a fifth more CPU per event than the same loop in bench/peers.py).
    intake = (
        IntakePath(
            bootstrap, redis_url, [v for _, v in values], window, workdir, max_batch_records()
        )
        if {"intake", "paced"} & set(args.paths)
        else None
    )
    if intake is not None and "intake" in args.paths:
        others.append(intake)
    if intake is not None and "paced" in args.paths:

        def rate() -> float:
            assert intake is not None
            return intake.accepted_eps[-1] if intake.accepted_eps else args.paced_rate

        others.append(
            PacedPath(bootstrap, redis_url, values, window, workdir, max_batch_records(), rate)
        )
    if "otlp" in args.paths:
        made = OtlpPath(bootstrap, redis_url, args.events, window, workdir, args.per_record)
        await made.produce(args.units)
        others.append(made)
    for round_ in range(args.rounds):
        if events is not None:
            await events.round(round_)
        for path in others:
            await path.round(round_)
    found = events.summary() if events is not None else {}
    return found | {path.name: path.summary(found) for path in others}


class EventsPath:
    """The events path: the daemon reading the produced topic, between two raw loops a round."""

    def __init__(
        self,
        args: argparse.Namespace,
        bootstrap: str,
        redis_url: str,
        topic: str,
        workdir: Path,
    ) -> None:
        self.args, self.bootstrap, self.redis_url = args, bootstrap, redis_url
        self.topic, self.workdir = topic, workdir
        self.window = (args.window[0], args.window[1])
        self.raw: list[tuple[float, float]] = []
        self.raw_tuned: list[tuple[float, float]] = []
        self.ctl: list[tuple[float, float]] = []
        self.peaks: list[float] = []
        self.costs: list[dict[str, Any]] = []
        self.load: list[float] = []

    async def _raw_pair(self) -> None:
        n = self.args.events
        self.raw.append(await raw_loop(self.bootstrap, self.topic, n, self.window))
        self.raw_tuned.append(
            await raw_loop(self.bootstrap, self.topic, n, self.window, tuned_gc=True)
        )

    async def round(self, round_: int) -> None:
        """A daemon run, with a raw run before (the last round's after) and after it.

        Alternating the two, a raw run on either side of each controller run, has
        drift in the machine's speed hit both alike."""
        raw, raw_tuned = self.raw, self.raw_tuned
        self.load.append(os.getloadavg()[0])
        if round_ == 0:
            await self._raw_pair()
        progress(
            f"round {round_ + 1} (load {self.load[-1]:.1f}): raw {raw[-1][0]:,.0f}/s, raw with "
            f"the daemon's gc settings {raw_tuned[-1][0]:,.0f}/s; controller..."
        )
        eps, cpu_ns, peak, cost = await controller_run(
            self.bootstrap, self.redis_url, self.topic, self.args.events, self.window, self.workdir
        )
        self.ctl.append((eps, cpu_ns))
        self.peaks.append(peak)
        self.costs.append(cost)
        await self._raw_pair()
        progress(
            f"round {round_ + 1}: controller {eps:,.0f}/s (ratio "
            f"{eps / around(raw, round_, 0):.3f}), {cpu_ns:,.0f} CPU ns/event (raw "
            f"{around(raw, round_, 1):,.0f}), peak RSS {peak:.0f} MB, Redis "
            f"{cost['commands_us']:.2f} us/event in commands, {cost['process_us']:.2f} in all"
        )

    def summary(self) -> dict[str, Any]:
        return summary(
            self.args,
            self.window,
            self.load,
            self.raw,
            self.raw_tuned,
            self.ctl,
            self.peaks,
            self.costs,
        )


def summary(
    args: argparse.Namespace,
    window: tuple[float, float],
    load: list[float],
    raw: list[tuple[float, float]],
    raw_tuned: list[tuple[float, float]],
    ctl: list[tuple[float, float]],
    peaks: list[float],
    costs: list[dict[str, Any]],
) -> dict[str, Any]:
    rounds = range(args.rounds)
    ratios = [ctl[i][0] / around(raw, i, 0) for i in rounds]
    cpu_ratios = [around(raw, i, 1) / ctl[i][1] for i in rounds]
    tuned_ratios = [ctl[i][0] / around(raw_tuned, i, 0) for i in rounds]
    ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    # The round whose Redis cost in commands is the median one, with its breakdown
    middle = sorted(costs, key=lambda c: float(c["commands_us"]))[len(costs) // 2]
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
        "redis_us_per_event": middle["commands_us"],
        "redis_process_us_per_event": round(
            statistics.median(float(c["process_us"]) for c in costs), 3
        ),
        "round_redis_us_per_event": [c["commands_us"] for c in costs],
        "redis_by_command_us": middle["by_command"],
        "redis_calls_per_1000_events": middle["calls_per_1000_events"],
    }


def max_batch_records() -> str:
    """The daemon's ``ingest.max_batch_records``: ``BENCH_BATCH``, else 5,000."""
    return os.environ.get("BENCH_BATCH", "5000")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    event_arguments(parser, rounds=5, round_help="raw/controller pairs")
    parser.add_argument(
        "--paths",
        type=paths_of,
        default=("events",),
        help="the ways the events reach Redis, comma-separated: events, intake, paced, otlp;"
        " all for events, intake and otlp",
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=5000.0,
        help="events/s of the paced path when the intake path is not run (else the intake's)",
    )
    parser.add_argument(
        "--per-record", type=int, default=100, help="spans a record on the OTLP path"
    )
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
