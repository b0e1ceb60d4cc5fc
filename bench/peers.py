"""Ingest against its peers: the controller, Quix Streams and bare consume loops, same events.

Produces N mixed events (as ``bench/ingest.py`` does, with its functions) to a
fresh topic, then reads the whole topic from the start with each of:

(a) ``aiokafka``: a bare aiokafka loop decoding each value with msgspec, nothing
    else (``ingest.py``'s raw loop);
(b) ``confluent``: a bare confluent-kafka loop (librdkafka; ``Consumer.consume``
    in batches of 5,000, partitions assigned from the beginning, no group)
    checking each message's error and decoding its value with msgspec, nothing else;
(c) ``quix``: a Quix Streams application (``bench/quix_counts.py``, in a child
    process) decoding JSON and counting each event per (flag, arm, event type)
    in its state store, committing as Quix does (a checkpoint every 5 s, state
    changes to its changelog topic). It runs with ``processing_guarantee=
    "exactly-once"``; where the broker refuses it (no first progress within
    ``--quix-start-timeout`` seconds, or the application fails before any), it
    runs at-least-once, and ``quix_guarantee`` says which ran;
(d) ``controller``: the real daemon (``rollout-controller run``), counting
    every event exactly once into Redis, as ``ingest.py`` runs it.

Each is timed over the same mid-run window (``--window``, by default from 20%
to 90% of the N events), in wall-clock time and in CPU time of its own
process (all its threads: librdkafka's too), with ``ingest.py``'s ``Window``:
(a) and (b) observe their own count after each batch; the daemon's progress is
polled in Redis (the offsets it flushed); the Quix child prints its count of
processed events every 1,000 and the parent notes the time and the child's CPU
when each line arrives. Start-up, group join, state recovery and the first
batches fall before the window, the tail and the last commit after it.

The four are run one after another in each of ``--rounds`` rounds (default 3),
the order turned by one each round so that none is always first or last after
the machine's drift. Each round gives the controller's ratio to each peer: its
events per second over the peer's (``ratio``) and its events per CPU second
over the peer's, i.e. the peer's CPU ns per event over the controller's
(``cpu_ratio``); above 1 the controller is faster or cheaper. The figures are
the medians over rounds. The daemon's CPU leaves out Redis's, which does its
share of the counting: ``cpu_ratio_with_redis`` adds the redis-server process's
CPU per event over each daemon run (``INFO cpu``) to the daemon's. ``load`` is
the machine's one-minute load average at the start of each round.

Progress goes to stderr; a table per broker and, last, one JSON object to stdout.

    python bench/peers.py [--events 1000000] [--rounds 3] [--broker kafka|tansu|both]
        [--window 0.2 0.9] [--quix-python PYTHON]

Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts a private
redis-server and the broker the tests choose (Apache Kafka under CI or where
``make kafka`` installed it, else the embedded tansu). ``--broker`` names it:
Apache Kafka, tansu, or both one after the other in one run, with the same
events and Redis; the JSON then holds one object per broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from following import PARTITIONS, Window, event_arguments, progress  # beside this script
from ingest import controller_run, on_brokers, produce, raw_loop

QUIX_SCRIPT = Path(__file__).resolve().parent / "quix_counts.py"
QUIX_VENV = Path(__file__).resolve().parent.parent / ".bench" / "quix"
"""Quix Streams' own virtualenv (``make quix``): its pins (pydantic below 2.14,
confluent-kafka below 2.13) would hold the project's own versions back."""
SIDES = ("aiokafka", "confluent", "quix", "controller")
PEERS = SIDES[:-1]
BATCH = 5000

Run = tuple[float, float]
"""One side's events per second and CPU nanoseconds per event, over the window."""


def confluent_loop(bootstrap: str, topic: str, n: int, window: tuple[float, float]) -> Run:
    """A bare confluent-kafka loop over the topic: events/s and CPU ns per event in the window."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-ck-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    decode = msgspec.json.decode
    timed = Window(n, window)
    seen = 0
    try:
        while seen < n:
            messages = consumer.consume(num_messages=BATCH, timeout=1.0)
            for message in messages:
                value = message.value()
                if message.error() is not None or value is None:
                    raise RuntimeError(f"confluent-kafka: {message.error()}")
                decode(value)
            seen += len(messages)
            timed.observe(seen, time.perf_counter(), time.process_time())
    finally:
        consumer.close()
    return timed.rate(), timed.cpu_ns()


class QuixRefused(RuntimeError):
    """The Quix application made no progress: it failed or hung before its first count."""


async def quix_run(
    args: argparse.Namespace,
    bootstrap: str,
    topic: str,
    window: tuple[float, float],
    workdir: Path,
    guarantee: str,
    *,
    first_timeout: float,
) -> Run:
    """Run ``quix_counts.py`` in a child and time it on the counts it prints."""
    state = workdir / f"quix-{uuid.uuid4().hex[:8]}"
    log_path = state.with_suffix(".log")
    command = [
        args.quix_python,
        str(QUIX_SCRIPT),
        bootstrap,
        topic,
        f"--events={args.events}",
        f"--guarantee={guarantee}",
        f"--state-dir={state}",
    ]
    with log_path.open("wb") as log:
        child = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=log
        )
    assert child.stdout is not None
    process = psutil.Process(child.pid)
    timed = Window(args.events, window)
    counted, last_report, line = 0, time.monotonic(), b""
    try:
        while True:
            # The first count may wait on group join and, exactly-once, the transactions' setup.
            timeout = first_timeout if counted == 0 else 120.0
            try:
                line = (await asyncio.wait_for(child.stdout.readline(), timeout)).strip()
            except TimeoutError:
                line = b""
            if line == b"done" or not line:
                break
            counted = int(line)
            cpu = process.cpu_times()
            timed.observe(counted, time.perf_counter(), cpu.user + cpu.system)
            if time.monotonic() - last_report > 5:
                progress(f"quix processed {counted:,}/{args.events:,}")
                last_report = time.monotonic()
    finally:
        if child.returncode is None and line != b"done":
            child.kill()
        code = await child.wait()
        shutil.rmtree(state, ignore_errors=True)
    if counted < args.events or code != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        message = f"quix ({guarantee}) stopped at {counted:,} events, exit {code}:\n{tail}"
        raise QuixRefused(message) if counted == 0 else RuntimeError(message)
    return timed.rate(), timed.cpu_ns()


async def one_broker(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    values: list[tuple[bytes, bytes]],
    workdir: Path,
) -> dict[str, Any]:
    """Produce the events to a fresh topic of ``bootstrap``, then the rounds on it."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    # Quix derives its changelog topic's retention from the input topic's, and tansu
    # describes only the configs a topic was created with: Kafka's default, named.
    produce_eps = await produce(bootstrap, topic, values, {"retention.ms": str(7 * 86_400_000)})
    progress(f"produced {args.events:,} events at {produce_eps:,.0f}/s")
    window = (args.window[0], args.window[1])
    runs: dict[str, list[Run]] = {side: [] for side in SIDES}
    redis_ns: list[float] = []
    peaks: list[float] = []
    load: list[float] = []
    guarantee = "exactly-once"

    async def quix() -> Run:
        nonlocal guarantee
        first = not runs["quix"]
        try:
            return await quix_run(
                args,
                bootstrap,
                topic,
                window,
                workdir,
                guarantee,
                first_timeout=args.quix_start_timeout if first else 120.0,
            )
        except QuixRefused as refused:
            if not first or guarantee != "exactly-once":
                raise
            progress(f"quix made no progress exactly-once; trying at-least-once: {refused}")
            guarantee = "at-least-once"
            return await quix()

    async def controller() -> Run:
        eps, cpu_ns, peak, cost = await controller_run(
            bootstrap, redis_url, topic, args.events, window, workdir
        )
        peaks.append(peak)
        redis_ns.append(float(cost["process_us"]) * 1000)
        return eps, cpu_ns

    measure = {
        "aiokafka": lambda: raw_loop(bootstrap, topic, args.events, window),
        "confluent": lambda: asyncio.to_thread(
            confluent_loop, bootstrap, topic, args.events, window
        ),
        "quix": quix,
        "controller": controller,
    }
    for round_ in range(args.rounds):
        load.append(os.getloadavg()[0])
        order = SIDES[round_ % len(SIDES) :] + SIDES[: round_ % len(SIDES)]
        for side in order:
            progress(f"round {round_ + 1} (load {os.getloadavg()[0]:.1f}): {side}...")
            runs[side].append(await measure[side]())
            eps, cpu_ns = runs[side][-1]
            progress(f"round {round_ + 1}: {side} {eps:,.0f}/s, {cpu_ns:,.0f} CPU ns/event")
    return summary(args, window, load, runs, redis_ns, peaks, guarantee)


def summary(
    args: argparse.Namespace,
    window: tuple[float, float],
    load: list[float],
    runs: dict[str, list[Run]],
    redis_ns: list[float],
    peaks: list[float],
    guarantee: str,
) -> dict[str, Any]:
    ctl = runs["controller"]
    rounds = range(args.rounds)
    ratios = {p: [ctl[i][0] / runs[p][i][0] for i in rounds] for p in PEERS}
    cpu_ratios = {p: [runs[p][i][1] / ctl[i][1] for i in rounds] for p in PEERS}
    with_redis = {p: [runs[p][i][1] / (ctl[i][1] + redis_ns[i]) for i in rounds] for p in PEERS}
    return {
        "events": args.events,
        "rounds": args.rounds,
        "window": list(window),
        "load": [round(x, 1) for x in load],
        "quix_guarantee": guarantee,
        "eps": {s: round(statistics.median(r[0] for r in runs[s])) for s in SIDES},
        "cpu_ns": {s: round(statistics.median(r[1] for r in runs[s])) for s in SIDES},
        "redis_cpu_ns": round(statistics.median(redis_ns)),
        "ratio": {p: round(statistics.median(ratios[p]), 3) for p in PEERS},
        "round_ratios": {p: [round(r, 3) for r in ratios[p]] for p in PEERS},
        "cpu_ratio": {p: round(statistics.median(cpu_ratios[p]), 3) for p in PEERS},
        "round_cpu_ratios": {p: [round(r, 3) for r in cpu_ratios[p]] for p in PEERS},
        "cpu_ratio_with_redis": {p: round(statistics.median(with_redis[p]), 3) for p in PEERS},
        "controller_peak_rss_mb": round(max(peaks), 1),
    }


def table(name: str, result: dict[str, Any]) -> str:
    """The figures of one broker as a Markdown table, the controller's ratios beside each peer."""
    lines = [
        f"{name}: {result['events']:,} events, {result['rounds']} rounds, load "
        f"{result['load']}, Quix {result['quix_guarantee']}",
        "| side | events/s | CPU ns/event | controller/side events/s | controller/side "
        "events per CPU s (with Redis) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for side in SIDES:
        eps, cpu = result["eps"][side], result["cpu_ns"][side]
        if side == "controller":
            redis = result["redis_cpu_ns"]
            lines.append(f"| controller | {eps:,} | {cpu:,} (+{redis:,} Redis) | | |")
            continue
        lines.append(
            f"| {side} | {eps:,} | {cpu:,} | {result['ratio'][side]:.2f} | "
            f"{result['cpu_ratio'][side]:.2f} ({result['cpu_ratio_with_redis'][side]:.2f}) |"
        )
    return "\n".join(lines)


def require_quix(python: str) -> None:
    """Stop before producing anything if ``python`` cannot import Quix Streams."""
    found = subprocess.run([python, "-c", "import quixstreams"], capture_output=True, check=False)
    if found.returncode != 0:
        sys.exit(f"{python} has no quixstreams: `make quix` installs it in {QUIX_VENV}/")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    require_quix(args.quix_python)
    result = await on_brokers(args, one_broker)
    for name, one in result.get("by_broker", {args.broker: result}).items():
        print(table(name, one), flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    event_arguments(parser, rounds=3, round_help="rounds of the four sides")
    parser.add_argument(
        "--quix-python",
        default=str(QUIX_VENV / "bin" / "python"),
        help="the Python that runs the Quix application (default: the virtualenv "
        "`make quix` makes, .bench/quix/)",
    )
    parser.add_argument(
        "--quix-start-timeout",
        type=float,
        default=90.0,
        help="seconds the first Quix run may take to its first count before exactly-once "
        "counts as refused",
    )
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps(result))
