"""The HTTP event intake: events per second through ``POST /v1/events``, against Kafka direct.

Starts a broker (KAFKA_BOOTSTRAP_SERVERS, a container, or the embedded tansu
broker) and Redis (REDIS_URL, a container, or a test-owned redis-server), runs
the daemon as a child process, and sends the same kind of mixed events
(exposures, request outcomes, conversions) through its intake in batches of
1, 100 and 500, ``--concurrency`` requests in flight (aiohttp, kept-alive
connections). Each batch is answered 202 only once the broker acknowledged
it, so these are acknowledged events per second.

Baseline, measured in the same run against the same broker: one Python
process producing the same number of events straight to the events topic
(aiokafka, acks=all, keyed by unit as the SDK keys them, every send awaited
once at the end). The ratio is intake events/s over direct events/s, the
baseline measured again in each of ``--rounds`` rounds (the figures printed
are the rounds' medians: the baseline alone varies by a quarter from run to
run on a shared machine), after an unmeasured warm-up of both paths (the
broker's JIT warms over the first tens of thousands of records). The load
generator and the daemon (which also ingests what it accepts) share this
machine's CPU, so the figures are a floor. At the end the daemon's
``rollout_intake_events`` must equal the events sent. The last line is one
JSON object.

    python bench/http_intake.py [--events 50000] [--concurrency 8] [--rounds 3]

The daemon takes its settings from the environment too, so the intake in a process
of its own is measured with ``RC_HTTP__INTAKE_PROCESS=true python bench/http_intake.py``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from following import create_topic, progress  # beside this script

from tests.support.backing.services import free_port, resolve_kafka, resolve_redis
from tests.support.controller_process import ControllerProcess, controller_env

BATCHES = (1, 100, 500)
SINGLE_EVENTS = 5_000
"""Events sent one per request: fewer, or the single-event run dominates the bench."""


def events(n: int, flag: str) -> list[bytes]:
    """``n`` encoded events of every kind, with unique ids."""
    made = []
    for i in range(n):
        event: dict[str, Any] = {
            "type": ("exposure", "request", "conversion")[i % 3],
            "v": 1,
            "id": uuid.uuid4().hex,
            "ts": 1_700_000_000_000 + i,
            "flag": flag,
            "unit": f"user-{i % 10_000}",
            "arm": "treatment" if i % 2 else "control",
            "flag_version": 1,
        }
        if i % 3 == 1:
            event |= {"error": i % 50 == 0, "latency_ms": float(i % 400)}
        elif i % 3 == 2:
            event["value"] = float(i % 9)
        made.append(orjson.dumps(event))
    return made


def daemon_env(*, bootstrap: str, redis_url: str, prefix: str, topic: str) -> dict[str, str]:
    """The daemon's environment: its intake unlimited and open, producing to ``topic``."""
    env = controller_env(bootstrap=bootstrap, redis_url=redis_url, prefix=prefix, events=topic)
    env |= {
        "RC_HTTP__INTAKE_EVENTS_PER_SECOND": "1e9",
        "RC_HTTP__REQUIRE_APP_KEYS": "false",
        "RC_LOG__LEVEL": "warning",
    }
    return env


async def direct(bootstrap: str, topic: str, values: list[bytes]) -> float:
    """Seconds one producer takes to have the broker acknowledge ``values``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, key=orjson.loads(v)["unit"].encode(), value=v)
            for v in values
        ]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def through_intake(base: str, values: list[bytes], size: int, concurrency: int) -> float:
    """Seconds the intake takes to accept ``values`` in batches of ``size``."""
    bodies = [
        b'{"events":[' + b",".join(values[i : i + size]) + b"]}"
        for i in range(0, len(values), size)
    ]
    next_body = 0
    headers = {"Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_body
        while next_body < len(bodies):
            body, next_body = bodies[next_body], next_body + 1
            while True:
                async with session.post(f"{base}/v1/events", data=body, headers=headers) as r:
                    if r.status == 202:
                        break
                    text = await r.text()
                    if r.status != 503:
                        raise RuntimeError(f"the intake answered {r.status}: {text}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - started


async def metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as r:
        text = await r.text()
    found = [line.split()[-1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(found[0]) if found else 0.0


async def wait_serving(base: str, daemon: ControllerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if not daemon.running:
                raise RuntimeError(f"the daemon exited:\n{daemon.log_text()[-3000:]}")
            try:
                async with session.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the daemon was not ready:\n{daemon.log_text()[-3000:]}")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        bootstrap, stop_kafka, kafka = resolve_kafka(Path(workdir))
        progress(f"kafka: {kafka}")
        try:
            redis_url, stop_redis, redis = resolve_redis(Path(workdir))
            progress(f"redis: {redis}")
            try:
                return await measure(args, bootstrap, redis_url, Path(workdir))
            finally:
                stop_redis()
        finally:
            stop_kafka()


async def measure(
    args: argparse.Namespace, bootstrap: str, redis_url: str, workdir: Path
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    topic = f"bench-intake-{run}"
    await create_topic(bootstrap, topic)
    port = free_port()
    env = daemon_env(bootstrap=bootstrap, redis_url=redis_url, prefix=f"bi{run}", topic=topic)
    env["RC_HTTP__PORT"] = str(port)
    base = f"http://127.0.0.1:{port}"
    daemon = ControllerProcess(env=env, log_path=workdir / "controller.log").start()
    directs: list[float] = []
    rates: dict[int, list[float]] = {size: [] for size in BATCHES}
    sent = 0
    try:
        await wait_serving(base, daemon)
        # Unmeasured: a cold broker made whichever path ran first the slower
        warm = events(args.events // 2, "bench-warm-up")
        await direct(bootstrap, topic, warm)
        warm = events(args.events // 2, "bench-warm-up-intake")
        await through_intake(base, warm, 500, args.concurrency)
        sent += len(warm)
        progress("warmed up: the broker and the daemon")
        for round_no in range(1, args.rounds + 1):
            # the baseline measured again in each round, just before the intake's runs
            values = events(args.events, f"bench-direct-{round_no}")
            directs.append(args.events / await direct(bootstrap, topic, values))
            progress(f"round {round_no}: direct {directs[-1]:.0f} events/s")
            for size in BATCHES:
                n = min(args.events, SINGLE_EVENTS) if size == 1 else args.events
                batch_values = events(n, f"bench-http-{size}-{round_no}")
                seconds = await through_intake(base, batch_values, size, args.concurrency)
                sent += n
                rates[size].append(n / seconds)
                ratio = rates[size][-1] / directs[-1]
                progress(f"round {round_no}: batches of {size}: {n / seconds:.0f} ({ratio:.2f})")
        acknowledged = await metric(base, "rollout_intake_events_total")
    finally:
        daemon.terminate()
    runs = {f"batch_{size}": figures(rates[size], directs, size) for size in BATCHES}
    print(f"{'path':<22} {'events/s':>12} {'ratio':>7}  (medians of {args.rounds} rounds)")
    print(f"{'Kafka direct':<22} {statistics.median(directs):>12.0f} {1:>7.2f}")
    for name, run_figures in runs.items():
        rate, ratio = run_figures["events_per_second"], run_figures["ratio_to_direct"]
        print(f"{'intake ' + name:<22} {rate:>12.0f} {ratio:>7.2f}")
    return {
        "events": args.events,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "direct_events_per_second": round(statistics.median(directs), 1),
        "direct_rounds": [round(d, 1) for d in directs],
        **runs,
        "intake_events_acknowledged": int(acknowledged),
        "intake_events_sent": sent,
    }


def figures(rates: list[float], directs: list[float], size: int) -> dict[str, Any]:
    """A batch size's medians over the rounds, each round's ratio to its own baseline."""
    ratios = [rate / d for rate, d in zip(rates, directs, strict=True)]
    median_rate = statistics.median(rates)
    return {
        "events_per_second": round(median_rate, 1),
        "requests_per_second": round(median_rate / size, 1),
        "ratio_to_direct": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per run")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of the baseline then every batch size; the figures are their medians",
    )
    result = asyncio.run(main(parser.parse_args()))
    assert result["intake_events_acknowledged"] == result["intake_events_sent"]
    print(json.dumps(result))
