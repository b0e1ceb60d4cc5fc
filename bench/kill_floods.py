"""A kill's latency, quiet and under floods of the daemon's HTTP routes.

Starts a broker and Redis (as the tests resolve them), runs the daemon as a
child process with every per-client rate out of the way, and times
``--kills`` signed kills (each of its own flag, one after another) from the
kill produced to the commands topic to its decision, applied, read from the
decisions topic: first with nothing else going on, then under each flood in
turn, each sent by ``--senders`` clients back to back from a process of
their own (:mod:`tests.support.clients.flooding`):

* ``otlp_same``: one OTLP export (3,000 spans, each with a flag evaluated)
  re-sent by every client;
* ``otlp_distinct``: distinct exports, each one's events new;
* ``events``: ``POST /v1/events`` batches of 500 fresh events;
* ``ofrep``: OFREP single evaluations.

Target: p95 ≤ 1 s under each. The broker is the tests' (``RC_TEST_BROKER=kafka`` or
``tansu`` picks one; the JSON names it). Every flood's figures are printed with the
answers it got; the last line printed is one JSON object.

    python bench/kill_floods.py [--kills 10] [--senders 6]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.scenarios.harness import TOPICS, Scenario
from tests.support.backing.services import free_port, resolve_kafka, resolve_redis
from tests.support.clients.flooding import FLAG, FLOOD_SETTINGS, floods, store_rollouts
from tests.support.otel.otlp_exports import export_copies
from tests.support.waiting import eventually

TARGET_SECONDS = 1.0
FLOODS = ("otlp_same", "otlp_distinct", "events", "ofrep")


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def create_topics(bootstrap: str, run: str) -> dict[str, str]:
    names = {name: f"bench-kill-{run}-{name}" for name in ("events", *TOPICS)}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, num_partitions=4 if n == "events" else 1, replication_factor=1)
                for n, t in names.items()
            ]
        )
    finally:
        await admin.close()
    return names


def figures(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[-1]
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1), "max_ms": ms[-1]}


async def measure(args: argparse.Namespace, bootstrap: str, redis_url: str, workdir: Path) -> Any:
    run = uuid.uuid4().hex[:8]
    topics = await create_topics(bootstrap, run)
    port, health = free_port(), free_port()
    bodies = export_copies(FLAG, 3_000, 48)
    files = []
    for i, body in enumerate(bodies):
        files.append(workdir / f"export-{i}.pb.gz")
        files[-1].write_bytes(body)
    results: dict[str, Any] = {}
    async with Scenario(
        bootstrap=bootstrap, redis_url=redis_url, prefix=f"bk{run}", topics=topics, workdir=workdir
    ) as scenario:
        scenario.configure(
            RC_HTTP__PORT=str(port),
            RC_HTTP__HEALTH_PORT=str(health),
            **FLOOD_SETTINGS,
        )
        flooded = {
            k: f for k, f in floods(port, files, senders=args.senders).items() if k in args.floods
        }
        flags = {k: [f"kill.{k}.{i}" for i in range(args.kills)] for k in ("quiet", *flooded)}
        await store_rollouts(
            redis_url, scenario.prefix, [FLAG, *(f for each in flags.values() for f in each)]
        )
        scenario.start_daemon()
        progress(f"daemon ready; {args.kills} kills quiet, then under each flood")
        for kind in ("quiet", *flooded):
            flood = flooded.get(kind)
            if flood is not None:
                await flood.start()
                await eventually(lambda f=flood: f.answered >= args.senders, timeout=120, what=kind)  # type: ignore[misc]
            started = time.perf_counter()
            took = [
                await scenario.kill_seconds(flag, reason=f"bench {kind}") for flag in flags[kind]
            ]
            answers = await flood.stop() if flood is not None else {}
            results[kind] = figures(took) | {
                "answers": {str(k): v for k, v in sorted(answers.items())},
                "seconds": round(time.perf_counter() - started, 1),
            }
            progress(f"{kind}: {results[kind]}")
    return results


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bootstrap, stop_kafka, kafka = resolve_kafka(workdir)
        progress(f"kafka: {kafka}")
        try:
            redis_url, stop_redis, redis = resolve_redis(workdir)
            progress(f"redis: {redis}")
            try:
                results = await measure(args, bootstrap, redis_url, workdir)
            finally:
                stop_redis()
        finally:
            stop_kafka()
    print(f"{'flood':<15} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  answers")
    for kind, r in results.items():
        print(f"{kind:<15} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8.0f}  {r['answers']}")
    worst = max(r["p95_ms"] for r in results.values())
    return {
        "kills": args.kills,
        "senders": args.senders,
        "target_p95_ms": TARGET_SECONDS * 1000,
        "worst_p95_ms": worst,
        "met": worst <= TARGET_SECONDS * 1000,
        "runs": results,
        "kafka": kafka,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="kills quiet and under each flood")
    parser.add_argument("--senders", type=int, default=6, help="clients of each flood")
    parser.add_argument(
        "--floods",
        nargs="+",
        choices=FLOODS,
        default=list(FLOODS),
        help="the floods to measure under, in this order (all four by default)",
    )
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
