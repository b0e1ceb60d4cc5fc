"""Events per second through the OTLP/Kafka path against the single-event Kafka path.

One broker, one Redis, one run. Two topics hold the same number of events:

(a) events: N of our own events, one per record (half exposures, half request
    outcomes, keyed by unit), as the SDK and the HTTP intake write them;
(b) otlp_spans: N / 2 SERVER spans, each with one ``feature_flag.evaluation``
    event (flag, variant, ``feature_flag.context.id``, ``feature_flag.version``)
    and its HTTP status, in records of ``--per-record`` spans (default 100), in
    the Collector's ``otlp_proto`` encoding: each span is an exposure and a
    request outcome, so N events.

The real daemon (``rollout-controller run``) reads one of them at a time,
``otlp.enabled`` for (b), with rollouts of the spans' flags stored so their
evaluations are known; a fresh key prefix each run. For (b) its events topic
is an empty one: it reads the events topic beside the OTLP topics, and (a)'s
events there would be read in the same loop, their time counted as the OTLP
path's. Each side is timed over the same mid-run window of its events flushed
to Redis (``--window``, 20% to 90%), in wall-clock time and in the daemon's
CPU time, as ``bench/ingest.py`` times it. The two alternate ``--rounds``
times, an events run before and after every OTLP run; a round's ratio is the
OTLP rate over the geometric mean of the events rates around it, so a steady
drift in the machine's speed cancels.
``ratio`` is their median (goal: at least 1.5), ``cpu_ratio`` the events path's
CPU nanoseconds per event over the OTLP path's. The last line printed is one
JSON object.

With ``--collector``, the same spans also go through the real OpenTelemetry
Collector (``make otelcol``) into a topic of their own, and the Collector's CPU per
span (receive → batch → Kafka export) is set beside ours for Kafka → aggregates,
on the Collector's own records (``bench/collector_cost.py``): ``collector_cpu_ratio``
is the Collector's CPU per span over ours (goal: at least 1, ours costs no more).

    python bench/otlp.py [--events 600000] [--per-record 100] [--rounds 3] [--collector]

Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts the embedded
broker and a private redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector_cost import records_written, through_collector  # beside this script
from following import (  # beside this script
    PARTITIONS,
    DaemonRun,
    around,
    create_topic,
    follow,
    forget,
    progress,
    window_argument,
)
from redis_cost import per_event, snapshot  # beside this script

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.support.backing.services import resolve_kafka, resolve_redis
from tests.support.clients.ofrep import flag_rollout
from tests.support.clients.ofrep import store as store_rollouts
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.otel.otlp_records import span_exports

FLAGS = [f"otlp-bench-{i:02d}" for i in range(20)]
VERSION = 1
T0_MS = 1_763_780_000_000


def spans_start_ns() -> int:
    """When the bench's first span starts: ten minutes ago. The daemon judges a span by
    its record's timestamp, the time it was written, and refuses one that ended more than
    a day before it (``bad_time``); spans of a fixed past date would time dead-lettering,
    not counting. Spans are 1 ms apart, so a million end about seven minutes from now,
    within the ten minutes ahead a span may end."""
    return time.time_ns() - 600 * 1_000_000_000


def single_events(n: int, units: int, seed: int = 2) -> list[tuple[bytes, bytes]]:
    """``n`` of our events, one a record, keyed by unit: exposures and request outcomes."""
    rng = random.Random(seed)
    values = []
    for i in range(n):
        unit = f"u{rng.randrange(units):07d}"
        event: dict[str, object] = {
            "type": "exposure" if i % 2 == 0 else "request",
            "v": 1,
            "id": f"e{i}-{uuid.uuid4().hex[:8]}",
            "ts": T0_MS + i,
            "flag": FLAGS[i % len(FLAGS)],
            "unit": unit,
            "arm": "treatment" if rng.random() < 0.5 else "control",
            "flag_version": VERSION,
        }
        if i % 2:
            latency = round(rng.lognormvariate(3, 0.5), 3)
            event |= {"error": rng.random() < 0.02, "latency_ms": latency}
        values.append((unit.encode(), orjson.dumps(event)))
    return values


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
    await create_topic(bootstrap, topic)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=8 * 1024 * 1024,
    )
    await producer.start()
    try:
        for index, (key, value) in enumerate(values):
            partition = None if key is not None else index % PARTITIONS
            await producer.send(topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def produce_spans(
    bootstrap: str, topics: dict[str, str], spans: int, per_record: int, units: int
) -> None:
    """``spans`` spans in records of ``per_record`` to ``topics["spans"]``; the OTLP run's
    logs topic and its (idle) events topic made empty."""
    made = time.perf_counter()
    records = span_exports(
        spans, per_record, FLAGS, units=units, version=VERSION, start_ns=spans_start_ns()
    )
    progress(
        f"{len(records):,} records of {per_record} spans "
        f"({sum(map(len, records)) / len(records):,.0f} bytes each) "
        f"in {time.perf_counter() - made:.1f} s"
    )
    await produce(bootstrap, topics["spans"], [(None, r) for r in records])
    await produce(bootstrap, topics["logs"], [])
    await produce(bootstrap, topics["idle"], [])


async def daemon_run(
    *,
    bootstrap: str,
    redis_url: str,
    topics: dict[str, str],
    otlp: bool,
    events_per_record: int,
    n: int,
    window: tuple[float, float],
    workdir: Path,
    counted: int | None = None,
) -> DaemonRun:
    """One daemon from start until Redis holds ``n`` events of one topic.

    Progress is the offsets flushed; afterwards the aggregates must hold ``counted``
    exposures and request outcomes (``n`` unless given), so that a run whose events
    were refused (and dead-lettered) fails instead of timing the refusals. Redis's
    cost is per event of ``n``, from the daemon's start to its last flush."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    events = topics["idle"] if otlp else topics["events"]
    env = controller_env(bootstrap=bootstrap, redis_url=redis_url, prefix=prefix, events=events)
    env |= {"RC_INGEST__MAX_BATCH_RECORDS": "5000", "RC_LOG__LEVEL": "warning"}
    if otlp:
        env |= {
            "RC_OTLP__ENABLED": "true",
            "RC_OTLP__SPANS_TOPIC": topics["spans"],
            "RC_OTLP__LOGS_TOPIC": topics["logs"],
        }
    settings = RedisSettings(url=redis_url, key_prefix=prefix)
    async with connect(settings) as client:
        await store_rollouts(client, prefix, [flag_rollout(f, 50, version=VERSION) for f in FLAGS])
        store = RedisAggregateStore(
            client,
            settings=settings,
            topic=env["RC_TOPICS__EVENTS"],
            source=topics["spans"] if otlp else None,
        )
        before = await snapshot(client)
        daemon = ControllerProcess(env=env, log_path=workdir / f"{prefix}.log").start()
        try:
            followed = await follow(daemon, store, n, window, events_per_record=events_per_record)
            redis = per_event(before, await snapshot(client), n)
        finally:
            daemon.terminate()
        await _all_counted(store, n if counted is None else counted)
        await forget(client, prefix)
    timed = followed.timed
    return DaemonRun(timed.rate(), timed.cpu_ns(), followed.peak_mb, redis)


async def _all_counted(store: RedisAggregateStore, expected: int) -> None:
    """Fail unless the aggregates hold ``expected`` exposures and request outcomes."""
    found = await store.read_many([(flag, [VERSION]) for flag in FLAGS])
    arms = [arm for each in found for arm in (each.treatment, each.control)]
    counted = sum(arm.exposures + arm.requests for arm in arms)
    if counted != expected:
        raise RuntimeError(
            f"{counted:,} events counted of {expected:,}: refused {await store.rejects()}"
        )


async def main(args: argparse.Namespace) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="rc-bench-otlp-"))
    spans = args.events // 2
    per = args.per_record
    n = (spans // per) * per * 2  # whole records only
    with ExitStack() as stack:
        bootstrap, stop_kafka, kafka_desc = resolve_kafka(workdir)
        stack.callback(stop_kafka)
        redis_url, stop_redis, redis_desc = resolve_redis(workdir)
        stack.callback(stop_redis)
        progress(f"broker: {kafka_desc}; redis: {redis_desc}")
        run_id = uuid.uuid4().hex[:8]
        topics = {k: f"bench-{k}-{run_id}" for k in ("events", "spans", "logs", "idle")}
        await produce_spans(bootstrap, topics, n // 2, per, args.units)
        await produce(bootstrap, topics["events"], list(single_events(n, args.units)))
        progress(f"produced {n:,} events each way")
        window = (args.window[0], args.window[1])
        single: list[tuple[float, float]] = []
        batched: list[tuple[float, float]] = []
        load: list[float] = []

        async def run(otlp: bool) -> tuple[float, float]:
            done = await daemon_run(
                bootstrap=bootstrap,
                redis_url=redis_url,
                topics=topics,
                otlp=otlp,
                events_per_record=2 * per if otlp else 1,
                n=n,
                window=window,
                workdir=workdir,
            )
            return done.eps, done.cpu_ns

        single.append(await run(False))
        for round_ in range(args.rounds):
            load.append(os.getloadavg()[0])
            batched.append(await run(True))
            single.append(await run(False))
            progress(
                f"round {round_ + 1} (load {load[-1]:.1f}): otlp {batched[-1][0]:,.0f} events/s, "
                f"single {around(single, round_, 0):,.0f}/s (ratio "
                f"{batched[-1][0] / around(single, round_, 0):.2f}); CPU ns/event otlp "
                f"{batched[-1][1]:,.0f}, single {around(single, round_, 1):,.0f}"
            )
        if args.collector:
            collector = await _collector_side(bootstrap, redis_url, run_id, args, workdir)
    rounds = range(args.rounds)
    ratios = [batched[i][0] / around(single, i, 0) for i in rounds]
    cpu_ratios = [around(single, i, 1) / batched[i][1] for i in rounds]
    ratio = statistics.median(ratios)
    print(f"single-event path: {statistics.median(s[0] for s in single):,.0f} events/s")
    print(f"OTLP/Kafka path:   {statistics.median(b[0] for b in batched):,.0f} events/s")
    print(f"ratio (median of {args.rounds} rounds): {ratio:.2f}")
    otlp_ns = statistics.median(b[1] for b in batched)
    if args.collector:
        collector["ours_cpu_ns_per_span"] = round(2 * otlp_ns)
        _print_collector(collector)
    return (collector if args.collector else {}) | {
        "events": n,
        "spans_per_record": per,
        "rounds": args.rounds,
        "window": list(window),
        "load": [round(x, 1) for x in load],
        "single_eps": round(statistics.median(s[0] for s in single)),
        "otlp_eps": round(statistics.median(b[0] for b in batched)),
        "ratio": round(ratio, 3),
        "round_ratios": [round(r, 3) for r in ratios],
        "single_cpu_ns": round(statistics.median(s[1] for s in single)),
        "otlp_cpu_ns": round(otlp_ns),
        "cpu_ratio": round(statistics.median(cpu_ratios), 3),
        "round_cpu_ratios": [round(r, 3) for r in cpu_ratios],
    }


async def _collector_side(
    bootstrap: str, redis_url: str, run_id: str, args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    """The spans through the Collector into topics of their own, then ours reading them."""
    topics = {k: f"bench-col-{k}-{run_id}" for k in ("spans", "logs", "idle")}
    for topic in topics.values():
        await produce(bootstrap, topic, [])
    spans = (args.events // 2 // args.per_record) * args.per_record
    records = span_exports(
        spans, args.per_record, FLAGS, units=args.units, version=VERSION, start_ns=spans_start_ns()
    )
    cpu_ns, spans_per_s = await through_collector(
        bootstrap=bootstrap, topics=topics, records=records, spans=spans, workdir=workdir
    )
    del records
    written = await records_written(bootstrap, topics["spans"], PARTITIONS)
    read = await daemon_run(
        bootstrap=bootstrap,
        redis_url=redis_url,
        topics=topics,
        otlp=True,
        events_per_record=1,
        n=written,
        window=(args.window[0], args.window[1]),
        workdir=workdir,
        counted=2 * spans,
    )
    ours = read.cpu_ns * written / spans
    return {
        "collector_spans": spans,
        "collector_records": written,
        "collector_spans_per_s": round(spans_per_s),
        "collector_cpu_ns_per_span": round(cpu_ns),
        "ours_cpu_ns_per_span_on_collector_records": round(ours),
        "collector_cpu_ratio": round(cpu_ns / ours, 3),
    }


def _print_collector(found: dict[str, float]) -> None:
    print(
        f"Collector, receive -> batch -> Kafka: {found['collector_cpu_ns_per_span']:,} CPU ns/span "
        f"({found['collector_spans_per_s']:,} spans/s, {found['collector_records']:,} records)"
    )
    print(
        f"ours, Kafka -> aggregates: {found['ours_cpu_ns_per_span_on_collector_records']:,} CPU "
        f"ns/span on the Collector's records, {found['ours_cpu_ns_per_span']:,} on records of "
        f"--per-record spans; Collector/ours: {found['collector_cpu_ratio']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=600_000, help="events each way")
    parser.add_argument("--per-record", type=int, default=100, help="spans (evaluations) a record")
    parser.add_argument("--units", type=int, default=200_000, help="distinct units")
    parser.add_argument("--rounds", type=int, default=3, help="OTLP runs, each between two others")
    window_argument(parser)
    parser.add_argument(
        "--collector",
        action="store_true",
        help="also time the OpenTelemetry Collector (make otelcol) on the same spans",
    )
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
