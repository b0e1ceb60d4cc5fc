"""Redis memory per running flag: a stage of traffic flushed through the real store.

Makes, for each of ``--flags`` flags, the events of one stage of a rollout: ``--units``
units split between the arms by ``--percent``, each sending an exponential number of
requests (``--requests`` on average, at least one; 2% failing, log-normal latencies),
one to three exposures, and converting one time in ten (a value seven times in ten).
The events are keyed by unit over 4 partitions, folded with ingest's own folder in
partition batches of ``--batch`` records and flushed in order with the real store into
a private redis-server, as the daemon counts them (never REDIS_URL's: the bench reads
its whole memory and empties it).

Then it reads what the stage costs Redis: ``used_memory`` (``INFO memory``) before and
after, per flag, and every key's ``MEMORY USAGE`` (all samples), by kind: the arms'
aggregate hashes, their HyperLogLogs of units, the sets of watched units, the
conversion names, and the partitions' own keys (offsets, event ids, flags seen). For
the aggregate hashes it also gives what they would take without their unit-bucket
fields (``u<bucket>.<kind>``; each hash copied without them and measured), and how
many fields they hold. The last line printed is one JSON object.

    python bench/redis_memory.py [--flags 40] [--units 4000] [--percent 50]
        [--requests 5] [--batch 1250] [--max-units 200000]
        [--exceptions 0] [--exception-names 1]

``--max-units`` is the store's ``redis.max_units_per_cell``: past it a cell keeps no more
units' own counts (``unit_counts_over`` in the output: the requests it summed instead).
``--exceptions`` adds that many named exceptions to each flag, every message its own (a
UUID and a number in it), under ``--exception-names`` distinct names: what a flood of
messages, or of names, costs the failures' counts (``failure_choice``: the hash that
chooses the names kept; their counts are fields of the aggregate hashes).
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
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.daemon.ingest.batches import Folder
from controller.ports import Record
from controller.settings import RedisSettings
from controller.settings.groups import MAX_UNITS_PER_CELL
from tests.support.backing.services import resolve_redis
from tests.support.reference import StubRecord, encode, partition_of

PARTITIONS = 4
KINDS = {
    ":a:": "aggregate_hashes",
    ":k:": "unit_counts",
    ":t:": "heaviest_units",
    ":b:": "unit_bucket_lanes",
    ":n:": "unit_bucket_lanes",
    ":h:": "unit_bucket_lanes",
    ":u:": "unit_hlls",
    ":w:": "watched_sets",
    ":cn:": "names",
    ":f:": "failure_choice",
}


def stage_events(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every flag's events of one stage, flag after flag, each unit's events together."""
    rng = random.Random(1)
    events: list[dict[str, Any]] = []

    def event(kind: str, flag: str, unit: str, arm: str, **extra: Any) -> None:
        events.append(
            {
                "type": kind,
                "v": 1,
                "id": f"e{len(events)}",
                "ts": 1_763_780_000_000 + len(events),
                "flag": flag,
                "unit": unit,
                "arm": arm,
                "flag_version": 2,
                **extra,
            }
        )

    for f in range(args.flags):
        flag = f"flag-{f:04d}"
        for u in range(args.units):
            unit = f"user-{f}-{u}"
            arm = "treatment" if rng.random() < args.percent / 100 else "control"
            for _ in range(rng.randint(1, 3)):
                event("exposure", flag, unit, arm)
            for _ in range(max(1, round(rng.expovariate(1 / args.requests)))):
                latency = round(rng.lognormvariate(4.0, 0.7), 3)
                event("request", flag, unit, arm, error=rng.random() < 0.02, latency_ms=latency)
            if rng.random() < 0.1:
                value = {"value": round(rng.uniform(5, 200), 2)} if rng.random() < 0.7 else {}
                event("conversion", flag, unit, arm, **value)
        for n in range(args.exceptions):  # each message its own; names as --exception-names
            unit = f"user-{f}-{rng.randrange(args.units)}"
            arm = "treatment" if rng.random() < args.percent / 100 else "control"
            name = f"Error{n % args.exception_names} in app/module.py:handler"
            example = f"Error: request {uuid.UUID(int=rng.getrandbits(128))} failed: {n}"
            event("exception", flag, unit, arm, failure=name, example=example)
    return events


def by_partition(events: list[dict[str, Any]]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {p: [] for p in range(PARTITIONS)}
    for body in events:
        p = partition_of(body["unit"], PARTITIONS)
        out[p].append(StubRecord(encode(body), len(out[p]), partition=p))
    return out


async def flush_all(store: RedisAggregateStore, parts: dict[int, list[Record]], batch: int) -> int:
    folder, counted = Folder(max_event_bytes=65536), 0
    for partition, records in parts.items():
        claim = await store.claim(partition)
        offset = claim.offset
        for start in range(0, len(records), batch):
            delta = folder.fold(partition, records[start : start + batch], [])
            await store.flush(delta, epoch=claim.epoch, expected_offset=offset)
            counted += delta.events
            offset = delta.next_offset
    return counted


async def without_buckets(client: Any, key: str, scratch: str) -> int:
    """MEMORY USAGE of the hash ``key`` copied without its unit-bucket fields."""
    fields = await client.hgetall(key)
    kept = {k: v for k, v in fields.items() if not _is_bucket(k)}
    await client.delete(scratch)
    if kept:
        await client.hset(scratch, mapping=kept)
    used = int(await client.memory_usage(scratch, samples=0) or 0)
    await client.delete(scratch)
    return used


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_bucket(field: bytes | str) -> bool:
    head, dot, _ = _text(field).partition(".")
    return bool(dot) and head[:1] == "u" and head[1:].isdigit()


async def measure(redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    events = stage_events(args)
    parts = by_partition(events)
    prefix = f"rm{uuid.uuid4().hex[:8]}"
    settings = RedisSettings(url=redis_url, key_prefix=prefix, max_units_per_cell=args.max_units)
    async with connect(settings) as client:
        await client.flushdb()  # the bench's own server
        await client.memory_purge()
        before = (await client.info("memory"))["used_memory"]
        store = RedisAggregateStore(client, settings=settings, topic="events")
        counted = await flush_all(store, parts, args.batch)
        await client.memory_purge()
        after = (await client.info("memory"))["used_memory"]
        by_kind: Counter[str] = Counter()
        hashes, fields, plain, encodings, over = 0, [], 0, Counter[str](), 0
        async for raw in client.scan_iter(count=1000):  # a private Redis: every key is ours
            key = _text(raw)
            used = int(await client.memory_usage(key, samples=0) or 0)
            kind = next((name for mark, name in KINDS.items() if mark in key), "partition_keys")
            by_kind[kind] += used
            if kind == "unit_counts" and key.endswith(("treatment", "control")):  # its state
                over += int(await client.hget(key, "over") or 0)
            if kind == "aggregate_hashes":
                hashes += 1
                fields.append(int(await client.hlen(key)))
                encodings[_text(await client.object("encoding", key))] += 1
                plain += await without_buckets(client, key, f"{prefix}:scratch-copy")
        await client.flushdb()
    flags = args.flags
    return {
        "flags": flags,
        "units_per_flag": args.units,
        "percent": args.percent,
        "events": len(events),
        "counted": counted,
        "partitions": PARTITIONS,
        "batch": args.batch,
        "max_units_per_cell": args.max_units,
        "unit_counts_over": over,
        "exceptions_per_flag": args.exceptions,
        "exception_names": min(args.exception_names, args.exceptions),
        "bytes_per_flag": round((after - before) / flags),
        "key_bytes_per_flag": round(sum(by_kind.values()) / flags),
        "by_kind_bytes_per_flag": {k: round(v / flags) for k, v in sorted(by_kind.items())},
        "aggregate_hashes": hashes,
        "aggregate_hash_fields_median": statistics.median(fields) if fields else 0,
        "aggregate_hash_encodings": dict(encodings),
        "aggregate_bytes_per_flag_without_buckets": round(plain / flags),
        "flag_bytes": round(sum(v for k, v in by_kind.items() if k != "partition_keys") / flags),
        "unit_count_bytes_per_unit": round(
            (by_kind["unit_counts"] + by_kind["heaviest_units"]) / (flags * args.units), 1
        ),
        "load": round(os.getloadavg()[0], 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="rc-memory-"))
        os.environ.pop("REDIS_URL", None)  # a server of its own, whatever the shell says
        redis_url, stop_redis, described = resolve_redis(workdir)
        stack.callback(stop_redis)
        print(f"[bench] redis: {described}", file=sys.stderr, flush=True)
        return await measure(redis_url, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=40, help="running flags")
    parser.add_argument("--units", type=int, default=4000, help="units per flag in the stage")
    parser.add_argument("--percent", type=float, default=50.0, help="the stage's treatment %%")
    parser.add_argument("--requests", type=float, default=5.0, help="requests per unit, mean")
    parser.add_argument("--batch", type=int, default=1250, help="records per partition batch")
    parser.add_argument(
        "--max-units", type=int, default=MAX_UNITS_PER_CELL, help="units a cell counts one by one"
    )
    parser.add_argument(
        "--exceptions", type=int, default=0, help="named exceptions per flag, each message new"
    )
    parser.add_argument(
        "--exception-names", type=int, default=1, help="distinct failure names among them"
    )
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
