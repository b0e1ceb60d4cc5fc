"""The HTTP-intake and OTLP paths of ``bench/ingest.py``: the same events reaching Redis
another way, with Redis's cost per event by command for each.

* ``intake``: the very events the events path produces (the same bytes), sent by this
  process to the daemon's ``POST /v1/events`` in batches of 500, 8 requests in flight
  (``bench/http_intake.py``'s sender), while the same daemon ingests what its intake
  produced to a fresh events topic. The daemon's CPU is the intake's and ingest's
  together; the sender shares the machine. Redis's cost holds, beside the flush, the
  intake's own record of the events it sent (:mod:`controller.adapters.redis.ledger`):
  a ``GET`` of each event's id before its batch is sent, a ``SET NX`` of it after the
  broker's acknowledgement (:data:`INTAKE_COMMANDS`; their commandstats time is
  ``redis_intake_us``). Commandstats leaves out each command's parsing and reply, which
  weigh on one-key commands, so after each run those reads and writes are replayed
  alone, batch by batch, and their process CPU (``redis_intake_process_us_per_event``)
  is set apart from the run's (``redis_rest_process_us_per_event``: the flush's and the rest).
* ``paced``: the same events produced straight to a fresh events topic at the rate
  the intake reached in the same round, in acknowledged bursts of 500, while the
  daemon runs: a flush's cost per event depends on how many events it carries, so
  this tells the intake's own cost from that of the rate it delivers events at.
* ``otlp``: as many events as SERVER spans with one ``feature_flag.evaluation`` each
  (an exposure and a request outcome a span), in the Collector's ``otlp_proto``
  records of ``--per-record`` spans, read by the daemon with OTLP on and an empty
  events topic (``bench/otlp.py``'s spans and daemon run, its 20 flags' rollouts
  stored, every event checked counted afterwards).

Each path's daemon runs start with a fresh key prefix and are timed as the events
path's: over the window of the events flushed to Redis, in wall-clock and in the
daemon's CPU time; Redis's cost is read around the whole run (``redis_cost``). With
the events path in the same run, ``*_over_events`` set each figure against it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from following import DaemonRun, create_topic, follow, forget, progress  # beside this script
from http_intake import daemon_env, metric, through_intake, wait_serving  # beside this script
from otlp import daemon_run, produce_spans  # beside this script
from redis_cost import per_event, snapshot  # beside this script

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.adapters.redis.ledger import EventLedger
from controller.settings import RedisSettings
from tests.support.backing.services import free_port
from tests.support.controller_process import ControllerProcess

PATHS = ("events", "intake", "paced", "otlp")
OTHERS = ("intake", "paced", "otlp")
"""The paths whose figures are under their own keys (the events path's are at the top)."""
INTAKE_BATCH = 500
INTAKE_CONCURRENCY = 8
INTAKE_COMMANDS = ("get", "set")
"""The intake's own commands: its record of the events it sent, read and written."""


def paths_of(text: str) -> tuple[str, ...]:
    """``--paths``: a comma-separated choice of :data:`PATHS`, ``all`` standing for
    events, intake and otlp; in :data:`PATHS`' order."""
    chosen = {p.strip() for p in text.split(",") if p.strip()}
    if "all" in chosen:
        chosen = (chosen - {"all"}) | {"events", "intake", "otlp"}
    if not chosen or chosen - set(PATHS):
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PATHS)}, or all")
    return tuple(p for p in PATHS if p in chosen)


class IngestPath:
    """A path other than the events path: its daemon runs, one a round, and their summary."""

    name = ""

    def __init__(
        self, bootstrap: str, redis_url: str, events: int, window: tuple[float, float], work: Path
    ) -> None:
        self.bootstrap, self.redis_url, self.events = bootstrap, redis_url, events
        self.window, self.workdir = window, work
        self.runs: list[DaemonRun] = []
        self.load: list[float] = []

    async def run(self) -> DaemonRun:
        raise NotImplementedError

    def detail(self, middle: int) -> dict[str, Any]:
        """What a path adds to its summary about the Redis cost of run ``middle``."""
        return {}

    async def round(self, round_: int) -> None:
        self.load.append(os.getloadavg()[0])
        done = await self.run()
        self.runs.append(done)
        progress(
            f"round {round_ + 1} (load {self.load[-1]:.1f}): {self.name} {done.eps:,.0f}/s, "
            f"{done.cpu_ns:,.0f} CPU ns/event, peak RSS {done.peak_mb:.0f} MB, Redis "
            f"{done.redis['commands_us']:.2f} us/event in commands, "
            f"{done.redis['process_us']:.2f} in all"
        )

    def summary(self, events_path: dict[str, Any]) -> dict[str, Any]:
        """The runs' medians; with the events path's summary, each set against its own."""
        runs = self.runs
        # The run whose Redis cost in commands is the median one, with its breakdown
        index = sorted(range(len(runs)), key=lambda i: float(runs[i].redis["commands_us"]))
        middle = runs[index[len(runs) // 2]]
        found: dict[str, Any] = {
            "events": self.events,
            "rounds": len(runs),
            "window": list(self.window),
            "load": [round(x, 1) for x in self.load],
            "eps": round(statistics.median(r.eps for r in runs)),
            "cpu_ns": round(statistics.median(r.cpu_ns for r in runs)),
            "peak_rss_mb": round(max(r.peak_mb for r in runs), 1),
            "redis_us_per_event": middle.redis["commands_us"],
            "redis_process_us_per_event": round(
                statistics.median(float(r.redis["process_us"]) for r in runs), 3
            ),
            "round_redis_process_us_per_event": [r.redis["process_us"] for r in runs],
            "redis_by_command_us": middle.redis["by_command"],
            "redis_calls_per_1000_events": middle.redis["calls_per_1000_events"],
        } | self.detail(index[len(runs) // 2])
        if "controller_eps" in events_path:
            found |= {
                "eps_over_events": round(found["eps"] / events_path["controller_eps"], 3),
                "cpu_ns_over_events": round(found["cpu_ns"] / events_path["controller_cpu_ns"], 3),
                "redis_process_over_events": round(
                    found["redis_process_us_per_event"] / events_path["redis_process_us_per_event"],
                    3,
                ),
            }
        return found


class IntakePath(IngestPath):
    """The events through ``POST /v1/events``, the daemon ingesting what its intake sent."""

    name = "intake"

    def __init__(
        self,
        bootstrap: str,
        redis_url: str,
        values: list[bytes],
        window: tuple[float, float],
        workdir: Path,
        max_batch_records: str,
    ) -> None:
        super().__init__(bootstrap, redis_url, len(values), window, workdir)
        self.values, self.max_batch_records = values, max_batch_records
        self.ids = [str(orjson.loads(v)["id"]) for v in values]
        self.ledger_us: list[float] = []
        self.accepted_eps: list[float] = []

    def detail(self, middle: int) -> dict[str, Any]:
        redis, alone = self.runs[middle].redis, self.ledger_us[middle]
        intake = sum(redis["by_command"].get(name, 0.0) for name in INTAKE_COMMANDS)
        return {
            "batch": INTAKE_BATCH,
            "concurrency": INTAKE_CONCURRENCY,
            "redis_intake_commands": list(INTAKE_COMMANDS),
            "redis_intake_us": round(intake, 3),
            "redis_intake_process_us_per_event": round(alone, 3),
            "redis_rest_process_us_per_event": round(float(redis["process_us"]) - alone, 3),
        }

    async def ledger_alone(self, ids: list[str]) -> float:
        """Redis's process CPU per event of the intake's own commands alone, replayed.

        The ledger's read and write of every id, batch by batch as the intake sends
        them, into a fresh prefix with nothing else running: what the intake adds to
        Redis's process time in the run, per-command parsing and replies included
        (which commandstats leaves out)."""
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        settings = RedisSettings(url=self.redis_url, key_prefix=prefix)
        async with connect(settings) as client:
            ledger = EventLedger(client, settings=settings)
            before = await snapshot(client)
            for i in range(0, len(ids), INTAKE_BATCH):
                batch = ids[i : i + INTAKE_BATCH]
                await ledger.recall(batch)
                await ledger.remember({e: f"{e:0>32}"[-32:] for e in batch}, ttl_s=3600)
            cost = per_event(before, await snapshot(client), len(ids))
            await forget(client, prefix)
        return float(cost["process_us"])

    async def run(self) -> DaemonRun:
        run_id = uuid.uuid4().hex[:8]
        topic, prefix, port = f"bench-intake-{run_id}", f"bench{run_id}", free_port()
        await create_topic(self.bootstrap, topic)
        env = daemon_env(
            bootstrap=self.bootstrap, redis_url=self.redis_url, prefix=prefix, topic=topic
        )
        env |= {"RC_HTTP__PORT": str(port), "RC_INGEST__MAX_BATCH_RECORDS": self.max_batch_records}
        base, n = f"http://127.0.0.1:{port}", self.events
        settings = RedisSettings(url=self.redis_url, key_prefix=prefix)
        async with connect(settings) as client:
            before = await snapshot(client)
            daemon = ControllerProcess(env=env, log_path=self.workdir / f"{prefix}.log").start()
            sending: asyncio.Task[float] | None = None
            try:
                await wait_serving(base, daemon)
                sending = asyncio.create_task(
                    through_intake(base, self.values, INTAKE_BATCH, INTAKE_CONCURRENCY)
                )
                store = RedisAggregateStore(client, settings=settings, topic=topic)
                followed = await follow(daemon, store, n, self.window, beside=sending)
                seconds = await sending
                redis = per_event(before, await snapshot(client), n)
                acknowledged = await metric(base, "rollout_intake_events_total")
            finally:
                if sending is not None and not sending.done():
                    sending.cancel()
                daemon.terminate()
            await forget(client, prefix)
        if acknowledged != n:
            raise RuntimeError(f"the intake acknowledged {acknowledged:,.0f} events of {n:,}")
        progress(f"the intake accepted {n / seconds:,.0f} events/s")
        self.accepted_eps.append(n / seconds)
        self.ledger_us.append(await self.ledger_alone(self.ids))
        timed = followed.timed
        return DaemonRun(timed.rate(), timed.cpu_ns(), followed.peak_mb, redis)


class PacedPath(IngestPath):
    """The events produced straight to the events topic at the rate the intake reached.

    Redis's cost per event of a flush depends on how many events it carries, which
    the rate they arrive at decides: this path tells the intake's own cost from that
    of its rate. The events go in bursts of :data:`INTAKE_BATCH`, each acknowledged,
    keyed by unit as the intake produces them, at the rate the intake accepted them in
    the same round (``rate`` when the intake path is not run)."""

    name = "paced"

    def __init__(
        self,
        bootstrap: str,
        redis_url: str,
        values: list[tuple[bytes, bytes]],
        window: tuple[float, float],
        workdir: Path,
        max_batch_records: str,
        rate: Callable[[], float],
    ) -> None:
        super().__init__(bootstrap, redis_url, len(values), window, workdir)
        self.values, self.max_batch_records, self.rate = values, max_batch_records, rate
        self.rates: list[float] = []

    def detail(self, middle: int) -> dict[str, Any]:
        return {"produced_eps": round(self.rates[middle])}

    async def run(self) -> DaemonRun:
        run_id = uuid.uuid4().hex[:8]
        topic, prefix, port = f"bench-paced-{run_id}", f"bench{run_id}", free_port()
        await create_topic(self.bootstrap, topic)
        env = daemon_env(
            bootstrap=self.bootstrap, redis_url=self.redis_url, prefix=prefix, topic=topic
        )
        env |= {"RC_HTTP__PORT": str(port), "RC_INGEST__MAX_BATCH_RECORDS": self.max_batch_records}
        rate = self.rate()
        settings = RedisSettings(url=self.redis_url, key_prefix=prefix)
        async with connect(settings) as client:
            before = await snapshot(client)
            daemon = ControllerProcess(env=env, log_path=self.workdir / f"{prefix}.log").start()
            sending: asyncio.Task[None] | None = None
            try:
                await wait_serving(f"http://127.0.0.1:{port}", daemon)
                sending = asyncio.create_task(
                    produce_paced(self.bootstrap, topic, self.values, rate)
                )
                store = RedisAggregateStore(client, settings=settings, topic=topic)
                followed = await follow(daemon, store, self.events, self.window, beside=sending)
                await sending
                redis = per_event(before, await snapshot(client), self.events)
            finally:
                if sending is not None and not sending.done():
                    sending.cancel()
                daemon.terminate()
            await forget(client, prefix)
        self.rates.append(rate)
        timed = followed.timed
        return DaemonRun(timed.rate(), timed.cpu_ns(), followed.peak_mb, redis)


async def produce_paced(
    bootstrap: str, topic: str, values: list[tuple[bytes, bytes]], rate: float
) -> None:
    """``values`` to ``topic`` in acknowledged bursts of :data:`INTAKE_BATCH`, ``rate`` a second."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    started = time.perf_counter()
    try:
        for i in range(0, len(values), INTAKE_BATCH):
            for key, value in values[i : i + INTAKE_BATCH]:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
            ahead = (i + INTAKE_BATCH) / rate - (time.perf_counter() - started)
            if ahead > 0:  # pacing the producer, not waiting on an outcome
                await asyncio.sleep(ahead)
    finally:
        await producer.stop()


class OtlpPath(IngestPath):
    """As many events in spans on the OTLP topic, read by the daemon with OTLP on."""

    name = "otlp"

    def __init__(
        self,
        bootstrap: str,
        redis_url: str,
        events: int,
        window: tuple[float, float],
        workdir: Path,
        per_record: int,
    ) -> None:
        whole = (events // 2 // per_record) * per_record * 2  # whole records only
        super().__init__(bootstrap, redis_url, whole, window, workdir)
        self.per_record = per_record
        run_id = uuid.uuid4().hex[:8]
        self.topics = {k: f"bench-{k}-{run_id}" for k in ("spans", "logs", "idle")}

    async def produce(self, units: int) -> None:
        """Write the spans, once, for every round."""
        await produce_spans(self.bootstrap, self.topics, self.events // 2, self.per_record, units)
        progress(f"produced {self.events // 2:,} spans ({self.events:,} events)")

    def detail(self, middle: int) -> dict[str, Any]:
        return {"spans_per_record": self.per_record}

    async def run(self) -> DaemonRun:
        return await daemon_run(
            bootstrap=self.bootstrap,
            redis_url=self.redis_url,
            topics=self.topics,
            otlp=True,
            events_per_record=2 * self.per_record,
            n=self.events,
            window=self.window,
            workdir=self.workdir,
        )


def print_paths(found: dict[str, Any]) -> None:
    """One line per path measured: its rate, the daemon's CPU and Redis's, per event."""
    rows = []
    if "controller_eps" in found:
        rows.append(("events", found["controller_eps"], found["controller_cpu_ns"], found))
    rows += [(p, found[p]["eps"], found[p]["cpu_ns"], found[p]) for p in OTHERS if p in found]
    base = found.get("redis_process_us_per_event")
    print(f"{'path':<8} {'events/s':>10} {'CPU ns/ev':>10} {'Redis us/ev':>12} {'of events':>10}")
    for name, eps, cpu_ns, each in rows:
        redis = each["redis_process_us_per_event"]
        ratio = f"{redis / base:.2f}" if base else "-"
        print(f"{name:<8} {eps:>10,} {cpu_ns:>10,} {redis:>12.3f} {ratio:>10}")
        top = [f"{c} {us}" for c, us in each["redis_by_command_us"].items() if us >= 0.01]
        print("         by command (us/event): " + ", ".join(top))
