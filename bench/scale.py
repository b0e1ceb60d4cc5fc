"""Scale-out and failover: ingest with 1, 2 and 3 instances, and takeover after ``kill -9``.

(a) Ingest: N mixed events on 6 partitions, counted by 1, 2 and 3 daemons
    sharing a group, against one Redis node and against a 3-master Redis
    Cluster, ``--rounds`` times each (medians; the machine's speed drifts).
    Each run gets a fresh key prefix and group; the clock
    runs from the first flush until Redis holds all N (the group forming, as
    the instances start together, is inside the window). Ratios are against
    1 instance on 1 node, measured in the same run. On a machine with few
    cores the instances share them with the broker and Redis, so this shows
    the cost of cluster mode and of coordination more than scaling.
(b) Takeover: 3 daemons with the default group and engine settings run one
    rollout while apps send events. The instance owning the flag's commands
    partition is killed (``kill -9``) once both consumer groups are stable,
    and the time until a survivor gates the flag (its ``/metrics`` shows the
    flag's guardrail gauges, which only the instance gating it sets) is
    recorded; the killed instance is restarted and the groups left to settle
    before the next kill. p50/p95 over
    ``--kills`` kills.

    python bench/scale.py [--events 1000000] [--rounds 3] [--kills 5] [--parts ingest,takeover]

The last line printed is one JSON object. Uses KAFKA_BOOTSTRAP_SERVERS /
REDIS_URL / REDIS_CLUSTER_URL when set, else starts its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.kafka.admin import partition_for
from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.settings import RedisSettings
from tests.scenarios.harness import TOPICS, Scenario
from tests.support.backing.services import (
    free_port,
    resolve_kafka,
    resolve_redis,
    resolve_redis_cluster,
)
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.reference import encode, make_event

PARTITIONS = 6
FLAG = "takeover"
COMMANDS_PARTITIONS = 3
# The harness's fast test settings, dropped so that takeover runs on the defaults.
TEST_TIMINGS = (
    "RC_KAFKA__SESSION_TIMEOUT_MS",
    "RC_KAFKA__HEARTBEAT_INTERVAL_MS",
    "RC_ENGINE__GATE_INTERVAL_SECONDS",
    "RC_ENGINE__SWEEP_INTERVAL_SECONDS",
)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def until(check: Callable[[], Awaitable[Any]], what: str, limit: float = 120) -> Any:
    deadline = time.monotonic() + limit
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


# -- (a) ingest -------------------------------------------------------------------------


async def ingest_run(
    bootstrap: str, redis_url: str, topic: str, n: int, instances: int, workdir: Path
) -> float:
    """Events per second counted by ``instances`` daemons, first flush to last."""
    prefix = f"scale{uuid.uuid4().hex[:8]}"
    env = controller_env(bootstrap=bootstrap, redis_url=redis_url, prefix=prefix, events=topic)
    env.update(RC_INGEST__MAX_BATCH_RECORDS="5000", RC_LOG__LEVEL="warning")
    daemons = [
        ControllerProcess(env=env, log_path=workdir / f"{prefix}-{i}.log").start()
        for i in range(instances)
    ]
    settings = RedisSettings(url=redis_url, key_prefix=prefix)
    try:
        async with connect(settings) as client:
            store = RedisAggregateStore(client, settings=settings, topic=topic)
            first, started, done = 0, 0.0, 0
            while done < n:
                done = sum([await store.offset(p) or 0 for p in range(PARTITIONS)])
                if done and not started:
                    started, first = time.perf_counter(), done
                if not all(d.running for d in daemons):
                    raise RuntimeError(f"a daemon died:\n{daemons[0].log_text()[-2000:]}")
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - started
            for key in [k async for k in client.scan_iter(match=f"*{prefix}*")]:
                await client.delete(key)
    finally:
        for daemon in daemons:
            daemon.terminate()
    return (n - first) / elapsed


async def ingest(
    bootstrap: str, backends: dict[str, str], n: int, rounds: int, workdir: Path
) -> dict[str, Any]:
    """Each configuration ``rounds`` times, interleaved so drift hits all alike; medians."""
    topic = f"scale-{uuid.uuid4().hex[:8]}"
    await produce_topic(bootstrap, topic, n)
    rates: dict[str, list[float]] = {}
    for round_ in range(rounds):
        for backend, url in backends.items():
            for instances in (1, 2, 3):
                eps = await ingest_run(bootstrap, url, topic, n, instances, workdir)
                rates.setdefault(f"{backend}_{instances}", []).append(eps)
                progress(
                    f"round {round_ + 1}: ingest, {backend}, {instances} instance(s): "
                    f"{eps:,.0f} events/s"
                )
    medians = {k: statistics.median(v) for k, v in rates.items()}
    base = medians["node_1"]
    return {
        "ingest_rounds": rounds,
        "ingest_eps": {k: round(v) for k, v in medians.items()},
        "ingest_ratio": {k: round(v / base, 3) for k, v in medians.items()},
        "ingest_eps_range": {k: [round(min(v)), round(max(v))] for k, v in rates.items()},
    }


async def produce_topic(bootstrap: str, topic: str, n: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    rng = random.Random(1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for i in range(n):
            event = make_event(rng, i, flags=20, units=50_000, versions=1, error_rate=0.02)
            await producer.send(topic, key=event["unit"].encode(), value=encode(event))
        await producer.flush()
    finally:
        await producer.stop()
    progress(f"produced {n:,} events")


# -- (b) takeover -----------------------------------------------------------------------


class Group:
    """Three daemons of one world on their own HTTP ports, restartable one by one."""

    def __init__(self, world: Scenario, workdir: Path) -> None:
        env = {k: v for k, v in world.daemon_env().items() if k not in TEST_TIMINGS}
        env["RC_LOG__LEVEL"] = "info"
        self._env, self._workdir = env, workdir
        self.daemons: dict[int, ControllerProcess] = {}
        for _ in range(3):
            self.start(free_port())

    def start(self, port: int) -> None:
        env = {**self._env, "RC_HTTP__PORT": str(port)}
        log = self._workdir / f"takeover-{port}.log"
        self.daemons[port] = ControllerProcess(env=env, log_path=log).start()

    async def get(self, port: int, path: str) -> httpx.Response | None:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return await client.get(f"http://127.0.0.1:{port}{path}")
        except httpx.HTTPError:
            return None

    async def owned(self, port: int, role: str) -> list[int]:
        reply = await self.get(port, "/readyz")
        return [] if reply is None else list(reply.json().get(f"{role}_partitions", []))

    async def gating(self, port: int) -> bool:
        reply = await self.get(port, "/metrics")
        return reply is not None and f'flag="{FLAG}"' in reply.text

    async def settled(self) -> bool:
        """Both groups are stable: every partition owned once, every instance owning some
        of each, and only the flag's owner gating it."""
        for role, count in (("events", PARTITIONS), ("commands", COMMANDS_PARTITIONS)):
            owned = [await self.owned(p, role) for p in self.daemons]
            if not all(owned) or sorted(p for o in owned for p in o) != list(range(count)):
                return False
        gating = [p for p in self.daemons if await self.gating(p)]
        return len(gating) == 1 and FLAG_PARTITION in await self.owned(gating[0], "commands")

    async def stable(self) -> bool:
        """Settled, and still so a second later (no rebalance under way)."""
        if not await self.settled():
            return False
        await asyncio.sleep(1)
        return bool(await self.settled())

    def kill_all(self) -> None:
        for daemon in self.daemons.values():
            daemon.kill()


FLAG_PARTITION = partition_for(FLAG, COMMANDS_PARTITIONS)


async def takeover_once(group: Group) -> float:
    """Seconds from ``kill -9`` of the flag's owner until a survivor gates the flag."""
    await until(group.stable, "the group to settle")
    gating = [p for p in group.daemons if await group.gating(p)]
    owner = gating[0]
    group.daemons.pop(owner).kill()
    killed = time.monotonic()

    async def survivor_gates() -> bool:
        return any([await group.gating(p) for p in group.daemons])

    await until(survivor_gates, "a survivor to gate the flag")
    took = time.monotonic() - killed
    group.start(owner)
    return took


async def takeover(bootstrap: str, redis_url: str, kills: int, workdir: Path) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    base = f"takeover-{uuid.uuid4().hex[:8]}"
    topics = {name: f"{base}.{name}" for name in ("events", *TOPICS)}
    sizes = {"events": PARTITIONS, "commands": COMMANDS_PARTITIONS}
    try:
        await admin.create_topics([NewTopic(t, sizes.get(n, 1), 1) for n, t in topics.items()])
    finally:
        await admin.close()
    plan = Plan(
        stages=[Stage(percent=50, min_duration=timedelta(hours=1), min_units_per_arm=0)],
        guardrails=[Guardrail(metric="error_rate")],
    )
    times: list[float] = []
    async with Scenario(
        bootstrap=bootstrap,
        redis_url=redis_url,
        prefix=base,
        topics=topics,
        workdir=workdir,
    ) as world:
        group = Group(world, workdir)
        try:
            world.run_apps(FLAG, rate=400, units=2000)
            await world.start(FLAG, plan)
            for kill in range(kills):
                times.append(await takeover_once(group))
                progress(
                    f"kill {kill + 1}/{kills}: a survivor gated the flag {times[-1]:.1f}s later"
                )
        finally:
            group.kill_all()
    ordered = sorted(times)
    return {
        "kills": kills,
        "takeover_s": [round(t, 2) for t in times],
        "takeover_p50_s": round(statistics.median(ordered), 2),
        "takeover_p95_s": round(
            ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 2
        ),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="rc-scale-"))
    for part in ("kafka", "redis", "cluster"):
        (workdir / part).mkdir()
    with ExitStack() as stack:
        bootstrap, stop_kafka, kafka_desc = resolve_kafka(workdir / "kafka")
        stack.callback(stop_kafka)
        redis_url, stop_redis, redis_desc = resolve_redis(workdir / "redis")
        stack.callback(stop_redis)
        cluster_url, stop_cluster, cluster_desc = resolve_redis_cluster(workdir / "cluster")
        stack.callback(stop_cluster)
        progress(f"broker: {kafka_desc}; redis: {redis_desc}; cluster: {cluster_desc}")
        backends = {"node": redis_url, "cluster": cluster_url}
        result: dict[str, Any] = {"events": args.events, "partitions": PARTITIONS}
        if "ingest" in args.parts:
            result |= await ingest(bootstrap, backends, args.events, args.rounds, workdir)
        if "takeover" in args.parts:
            result |= await takeover(bootstrap, redis_url, args.kills, workdir)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to ingest per run")
    parser.add_argument("--rounds", type=int, default=3, help="ingest runs per configuration")
    parser.add_argument("--kills", type=int, default=5, help="owners to kill for takeover")
    parser.add_argument(
        "--parts", default="ingest,takeover", help="which measurements (comma-separated)"
    )
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
