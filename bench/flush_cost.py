"""Redis's CPU per event of the exactly-once flush alone, by command, without a broker.

Folds N mixed events (as ``bench/ingest.py`` produces them, keyed by unit
over 4 partitions) with ingest's own folder into batches of ``--batch``
records per partition and flushes them in order with the real store, one
partition after another, against a private redis-server (or REDIS_URL).
Prints the redis-server process's CPU per event (``INFO cpu``) and its time
per event by command (``INFO commandstats``), of the cheapest of ``--repeat``
passes (each into fresh keys); the last line is one JSON object. Commandstats
time is wall-clock time inside each call: on a loaded machine it counts the
time Redis waited for a core too, and can exceed the process's CPU time, so
the process's CPU is the figure to compare and the commands say where it goes.

    python bench/flush_cost.py [--events 400000] [--flags 20] [--units 200000]
        [--batch 1250] [--dupes 0.0] [--repeat 3] [--cluster]

``--cluster`` flushes into a private 3-master Redis Cluster (or REDIS_CLUSTER_URL):
the cost per event is summed over the masters, and ``process_us_by_node`` shows
how the partitions' work fell on them (a partition's keys are one slot).

``--dupes`` makes that share of the records copies of earlier events (an app's
re-sends), so the cost of refusing and folding again shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis
from redis_cost import Snapshot, per_event, snapshot  # beside this script

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import cluster_nodes
from controller.core.common import DuplicateEvents
from controller.daemon.ingest.batches import Folder
from controller.settings import RedisSettings
from tests.support.backing.services import resolve_redis, resolve_redis_cluster
from tests.support.reference import StubRecord, encode, make_event, partition_of

PARTITIONS = 4


def records_by_partition(args: argparse.Namespace) -> dict[int, list[StubRecord]]:
    rng = random.Random(1)
    events = [
        make_event(rng, i, flags=args.flags, units=args.units, versions=1, error_rate=0.02)
        for i in range(args.events)
    ]
    copies = rng.sample(range(args.events), int(args.events * args.dupes))
    stream = events + [events[i] for i in sorted(copies)]
    out: dict[int, list[StubRecord]] = {p: [] for p in range(PARTITIONS)}
    for event in stream:
        p = partition_of(event["unit"], PARTITIONS)
        out[p].append(StubRecord(encode(event), len(out[p]), partition=p))
    return out


async def flush_all(
    store: RedisAggregateStore, parts: dict[int, list[StubRecord]], batch: int
) -> tuple[int, float]:
    folder, folded, folding = Folder(max_event_bytes=65536), 0, 0.0
    for partition, records in parts.items():
        claim = await store.claim(partition)
        offset = claim.offset
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            known = frozenset[str]()
            while True:
                began = time.process_time()
                delta = folder.fold(partition, list(chunk), [], known=known)
                folding += time.process_time() - began
                try:
                    await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
                    break
                except DuplicateEvents as exc:
                    known |= exc.ids
            folded += delta.events
            offset = delta.next_offset
    return folded, folding


async def one_pass(
    redis_url: str, parts: dict[int, list[StubRecord]], batch: int
) -> dict[str, Any]:
    """Every batch flushed into a fresh key prefix; Redis's cost per record and the fold's.

    On a cluster each master is read apart (``INFO`` is per server) and the figures summed;
    ``process_us_by_node`` says how the work fell on the masters."""
    records = sum(len(r) for r in parts.values())
    settings = RedisSettings(url=redis_url, key_prefix=f"fc{uuid.uuid4().hex[:8]}")
    nodes = []
    if redis_url.startswith("redis+cluster"):
        nodes = [aioredis.Redis(host=host, port=port) for host, port in cluster_nodes(redis_url)]
    async with connect(settings) as client:
        servers: list[Any] = nodes or [client]
        store = RedisAggregateStore(client, settings=settings, topic="events")
        before = [await snapshot(s) for s in servers]
        counted, fold_s = await flush_all(store, parts, batch)
        after = [await snapshot(s) for s in servers]
        memory = sum([(await s.info("memory"))["used_memory"] for s in servers])
        for server in servers:
            await server.flushdb()
    for node in nodes:
        await node.aclose()
    each = [per_event(b, a, records) for b, a in zip(before, after, strict=True)]
    return {
        "counted": counted,
        **per_event(summed(before), summed(after), records),
        "process_us_by_node": [e["process_us"] for e in each],
        "fold_us": round(fold_s * 1e6 / records, 3),
        "memory_mb": round(memory / 2**20, 1),
    }


def summed(snapshots: list[Snapshot]) -> Snapshot:
    """One snapshot of several servers: their calls, time and CPU added up."""
    commands: dict[str, tuple[int, int]] = {}
    for snap in snapshots:
        for name, (calls, usec) in snap.commands.items():
            had = commands.get(name, (0, 0))
            commands[name] = (had[0] + calls, had[1] + usec)
    return Snapshot(commands, sum(s.cpu_seconds for s in snapshots))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    parts = records_by_partition(args)
    passes = []
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="rc-flush-"))
        resolve = resolve_redis_cluster if args.cluster else resolve_redis
        redis_url, stop_redis, redis_desc = resolve(workdir)
        stack.callback(stop_redis)
        print(f"[bench] redis: {redis_desc}", file=sys.stderr, flush=True)
        for _ in range(args.repeat):
            passes.append(await one_pass(redis_url, parts, args.batch))
    # Other work on the machine only ever adds time: the cheapest pass is the truest.
    best = min(passes, key=lambda p: float(p["process_us"]))
    return {
        "events": args.events,
        "records": sum(len(r) for r in parts.values()),
        "counted": best["counted"],
        "batch": args.batch,
        "dupes": args.dupes,
        "load": round(os.getloadavg()[0], 1),
        "redis_process_us_per_event": best["process_us"],
        "process_us_by_node": best["process_us_by_node"],
        "pass_process_us": [p["process_us"] for p in passes],
        "redis_us_per_event": best["commands_us"],
        "redis_by_command_us": best["by_command"],
        "calls_per_1000_events": best["calls_per_1000_events"],
        "fold_us_per_event": best["fold_us"],
        "redis_used_memory_mb": best["memory_mb"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=400_000, help="distinct events")
    parser.add_argument("--flags", type=int, default=20, help="distinct flags")
    parser.add_argument("--units", type=int, default=200_000, help="distinct units")
    parser.add_argument("--batch", type=int, default=1250, help="records per partition batch")
    parser.add_argument("--dupes", type=float, default=0.0, help="share of records re-sent")
    parser.add_argument("--repeat", type=int, default=3, help="passes (the cheapest is shown)")
    parser.add_argument("--cluster", action="store_true", help="a 3-master Redis Cluster")
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
