"""The console's costs: gate history per rollout-hour and per gate, and /ui with 1,000 rollouts.

Part 1, the history: one rollout gated every 0.25 s (the daemon's gate
interval for a flag with events) for one simulated hour, 14,400 gates, with
aggregates that grow as traffic arrives. Each gate runs the real
``gate.evaluate`` and the real :class:`Recorder` into the real Redis store
with the default history settings. It reports the points kept, the Redis
memory they take (``MEMORY USAGE``), and the CPU the recorder adds to a gate,
against the CPU of the gate's own evaluation measured in the same run. The
first hour of a stage is its most expensive: later hours keep fewer points.

Part 2, the pages: 1,000 running rollouts of the default plan in Redis, each
with 60 history points in its current stage and 5 decisions, served by the
real HTTP server and :class:`ConsoleData`. It times ``GET /ui`` (every
rollout), a rollout's page, its ``/rollouts/{flag}/history`` and, as the
baseline, the existing ``GET /rollouts/{flag}`` status. Client and server
share one event loop, so the times include the client's own work. The list
is built at most once per ``LIST_TTL_S`` whatever the number of pollers, so
``ui_list_build`` (the list built afresh each time) is its real cost and
``ui_list`` what a poll usually costs.

The last line printed is one JSON object.

    python bench/console.py [--rollouts 1000] [--requests 20]

Uses REDIS_URL when set, else starts a private redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.http import HttpServer
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.client import RedisClient
from controller.adapters.redis.history import RedisGateHistory
from controller.adapters.redis.rollouts import RolloutStore
from controller.core.common.histogram import BUCKET_COUNT, bucket_of
from controller.core.machine.gate import evaluate
from controller.core.reading import history
from controller.core.reading.views import FlagStates
from controller.core.rollouts.plan import DEFAULT_PLAN
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.daemon.rollouts.history import Recorder
from controller.daemon.serving.console import ConsoleData
from controller.daemon.serving.status import StatusView
from controller.ports import StateWrite
from controller.settings import HistorySettings, RedisSettings, TopicSettings
from tests.support.backing.services import scratch_redis

GATE_INTERVAL_S = 0.25
HOUR_S = 3600
POINTS_PER_ROLLOUT = 60
DECISIONS_PER_ROLLOUT = 5


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def rollout(index: int, now: datetime, rng: random.Random) -> Rollout:
    stage = rng.randrange(4)
    started = now - timedelta(minutes=rng.uniform(1, 50))
    return Rollout(
        flag=f"bench.console-{index:05d}",
        rollout_id=uuid.UUID(int=rng.getrandbits(128)).hex,
        plan=DEFAULT_PLAN,
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=started,
        salt=secrets.token_hex(8),
        flag_version=stage + 1,
        stage_versions={s: [s + 1] for s in range(stage + 1)},
        started_at=started - timedelta(hours=stage),
        updated_at=started,
    )


def arm(seconds: float, share: float, rng: random.Random) -> ArmAggregate:
    """A healthy arm after ``seconds`` of 200 requests/s split by ``share``: 2% errors, ~20 ms."""
    requests = int(200 * seconds * share) + 1
    histogram = [0] * BUCKET_COUNT
    for latency in (18.0, 20.0, 22.0):
        histogram[bucket_of(latency)] += requests // 3
    histogram[bucket_of(20.0)] += requests - sum(histogram)
    return ArmAggregate(
        exposures=requests,
        units=max(1, requests // 3),
        requests=requests,
        errors=int(requests * 0.02),
        latency_count=requests,
        latency_sum_ms=20.0 * requests,
        latency_histogram=tuple(histogram),
        conversions=requests // 10,
    )


# -- part 1: the history's cost ---------------------------------------------------------------


async def history_cost(client: RedisClient, prefix: str) -> dict[str, Any]:
    settings = HistorySettings()
    store = RedisGateHistory(client, settings=RedisSettings(key_prefix=prefix), history=settings)
    recorder = Recorder(store=store, settings=settings, topics=TopicSettings())
    rng = random.Random(3)
    start = datetime(2026, 11, 22, tzinfo=UTC)
    r = rollout(0, start, rng).model_copy(update={"stage": 1, "stage_started_at": start})
    gates = int(HOUR_S / GATE_INTERVAL_S)
    evaluate_cpu = record_cpu = 0.0
    for i in range(gates):
        now = start + timedelta(seconds=i * GATE_INTERVAL_S)
        elapsed = i * GATE_INTERVAL_S
        data = FlagAggregates(
            r.flag, frozenset({2}), arm(elapsed, 0.05, rng), arm(elapsed, 0.95, rng)
        )
        began = time.process_time()
        verdict = evaluate(r, data, now)
        evaluated = time.process_time()
        await recorder.gate(r.flag, r, verdict, now)
        evaluate_cpu += evaluated - began
        record_cpu += time.process_time() - evaluated
    (points,) = [p for p in await store.points(r.flag, r.rollout_id, 2) if p]
    key = f"{{{prefix}:history:{r.flag}}}:points:{r.rollout_id}:1"
    memory = int(await client.memory_usage(key) or 0)
    sample = history.decode(points[-1])
    assert sample is not None
    return {
        "gates": gates,
        "points_kept": len(points),
        "bytes_per_point": round(sum(map(len, points)) / len(points), 1),
        "redis_bytes_per_rollout_hour": memory,
        "redis_mb_per_1000_rollout_hours": round(memory * 1000 / 1e6, 1),
        "record_cpu_us_per_gate": round(1e6 * record_cpu / gates, 2),
        "evaluate_cpu_us_per_gate": round(1e6 * evaluate_cpu / gates, 2),
        "record_cpu_us_per_point": round(1e6 * record_cpu / len(points), 1),
        "record_vs_evaluate": round(record_cpu / evaluate_cpu, 4),
        "guardrails_per_point": len(sample.guardrails),
    }


# -- part 2: the pages with 1,000 rollouts ------------------------------------------------------


async def fill(client: RedisClient, prefix: str, n: int) -> list[Rollout]:
    rng = random.Random(11)
    now = datetime.now(UTC)
    states = RolloutStore(client, settings=RedisSettings(key_prefix=prefix))
    store = RedisGateHistory(
        client, settings=RedisSettings(key_prefix=prefix), history=HistorySettings()
    )
    made = [rollout(i, now, rng) for i in range(n)]
    for r in made:
        await states.save(r.flag, StateWrite(rev=0, rollout=r))
        for j in range(POINTS_PER_ROLLOUT):
            at = r.stage_started_at + timedelta(seconds=10 * j)
            seconds = 10.0 * (j + 1)
            data = FlagAggregates(
                r.flag, frozenset(), arm(seconds, 0.05, rng), arm(seconds, 0.95, rng)
            )
            point = history.point_of(r, evaluate(r, data, at), at)
            await store.append_point(r.flag, r.rollout_id, r.stage, history.encode(point))
        for j in range(DECISIONS_PER_ROLLOUT):
            decision = {
                "type": "decision",
                "id": uuid.uuid4().hex,
                "ts": (r.started_at + timedelta(minutes=j)).isoformat(),
                "flag": r.flag,
                "rollout_id": r.rollout_id,
                "kind": "gate",
                "action": "advance",
                "outcome": "applied",
                "reason": "guardrails hold and the stage is complete",
                "stage": j % 4,
                "evidence": {"arms": {}, "guardrails": {}},
            }
            await store.append_message(r.flag, orjson.dumps(decision), alert=False)
    return made


async def timed(http: httpx.AsyncClient, path: str, n: int) -> dict[str, float]:
    times, size = [], 0
    for _ in range(n):
        began = time.perf_counter()
        response = await http.get(path)
        times.append(time.perf_counter() - began)
        response.raise_for_status()
        size = len(response.content)
    times.sort()
    return {
        "p50_ms": round(1000 * statistics.median(times), 1),
        "p95_ms": round(1000 * times[min(len(times) - 1, int(0.95 * len(times)))], 1),
        "kib": round(size / 1024, 1),
    }


async def page_latency(client: RedisClient, prefix: str, n: int, requests: int) -> dict[str, Any]:
    redis_settings = RedisSettings(key_prefix=prefix)
    made = await fill(client, prefix, n)
    progress(f"{n} rollouts with history written")
    states = RolloutStore(client, settings=redis_settings)
    aggregates = RedisAggregateStore(client, settings=redis_settings, topic="rollout.events")
    store = RedisGateHistory(client, settings=redis_settings, history=HistorySettings())
    status = StatusView(
        states=states,
        aggregates=aggregates,
        stale_after=timedelta(days=14),
        clock=lambda: datetime.now(UTC),
    )
    console = ConsoleData(
        states=states, history=store, status=status, clock=lambda: datetime.now(UTC)
    )
    uncached = ConsoleData(
        states=states,
        history=store,
        status=status,
        clock=lambda: datetime.now(UTC),
        list_ttl_s=0,
    )
    builds = []
    for _ in range(requests):
        began = time.perf_counter()
        await uncached.list_fragment()
        builds.append(time.perf_counter() - began)
    builds.sort()
    build = {
        "p50_ms": round(1000 * statistics.median(builds), 1),
        "p95_ms": round(1000 * builds[min(len(builds) - 1, int(0.95 * len(builds)))], 1),
    }

    async def ready() -> tuple[bool, dict[str, Any]]:
        return True, {}

    async def no_flags() -> FlagStates:
        return FlagStates([])

    server = HttpServer(
        host="127.0.0.1",
        port=0,
        readiness=ready,
        flags=no_flags,
        metrics=bytes,
        metrics_content_type="text/plain",
        rollouts=status,
        history=console.history,
        console=console,
    )
    flag = made[n // 2].flag
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        return {
            "ui_list_build": build,
            "status_json": await timed(http, f"/rollouts/{flag}", requests),
            "ui_list": await timed(http, "/ui", requests),
            "ui_list_fragment": await timed(http, "/ui/fragment/list", requests),
            "ui_rollout": await timed(http, f"/ui/rollouts/{flag}", requests),
            "history_json": await timed(http, f"/rollouts/{flag}/history", requests),
        }


async def run(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    prefix = f"benchconsole{uuid.uuid4().hex[:8]}"
    async with connect(RedisSettings(url=redis_url)) as client:
        try:
            cost = await history_cost(client, prefix)
            progress(
                f"history: {cost['points_kept']} points kept of {cost['gates']} gates in an hour, "
                f"{cost['redis_bytes_per_rollout_hour']:,} bytes in Redis "
                f"({cost['redis_mb_per_1000_rollout_hours']} MB per 1,000 rollout-hours); "
                f"recording adds {cost['record_cpu_us_per_gate']} us of CPU per gate "
                f"(the evaluation itself: {cost['evaluate_cpu_us_per_gate']} us)"
            )
            pages = await page_latency(client, prefix, args.rollouts, args.requests)
        finally:
            keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
    for name, figures in pages.items():
        size = f", {figures['kib']} KiB" if "kib" in figures else ""
        progress(f"{name}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms{size}")
    baseline = pages["status_json"]["p50_ms"] or 0.1
    return {
        "bench": "console",
        "rollouts": args.rollouts,
        **{f"history_{k}": v for k, v in cost.items()},
        **{f"{page}_{k}": v for page, figures in pages.items() for k, v in figures.items()},
        "ui_list_build_vs_status_json": round(pages["ui_list_build"]["p50_ms"] / baseline, 1),
        "ui_rollout_vs_status_json": round(pages["ui_rollout"]["p50_ms"] / baseline, 1),
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with scratch_redis("rc-bench-console-") as (_, redis_url, redis_desc):
        progress(f"redis: {redis_desc}")
        return asyncio.run(run(args, redis_url))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=1000, help="rollouts in the list")
    parser.add_argument("--requests", type=int, default=20, help="requests timed per page")
    result = main(parser.parse_args())
    print(json.dumps(result))
