"""Following a daemon run in Redis, shared by the ingest benches.

A bench starts the real daemon (``rollout-controller run``) and polls the
offsets it stored in Redis until it flushed all the events it was given. A
:class:`Window` times the run from the moment a first fraction of the events
was flushed to the moment a second one was, in wall-clock time and in the
daemon's CPU time (user + system, read with each poll), the crossings
interpolated between polls; :func:`follow` does the polling, and keeps the
daemon's peak RSS. :func:`around` is how a round's figure is set against the
baseline runs on either side of it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controller.adapters.redis.aggregates import RedisAggregateStore
from tests.support.controller_process import ControllerProcess

PARTITIONS = 4
"""Partitions of every topic the benches make."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Window:
    """How long, in wall-clock and CPU time, a count takes to go from ``lo`` to ``hi``.

    Crossings are interpolated between observations.
    """

    def __init__(self, n: int, window: tuple[float, float]) -> None:
        self.lo, self.hi = round(n * window[0]), round(n * window[1])
        self._last: tuple[int, float, float] | None = None
        self._start: tuple[float, float] | None = None
        self._end: tuple[float, float] | None = None

    def observe(self, count: int, at: float, cpu: float) -> None:
        """The count reached ``count`` by wall time ``at``, having used ``cpu`` seconds."""
        if self._last is not None:
            if self._start is None:
                self._start = self._crossing(self.lo, count, at, cpu)
            if self._end is None:
                self._end = self._crossing(self.hi, count, at, cpu)
        self._last = (count, at, cpu)

    def _crossing(self, mark: int, count: int, at: float, cpu: float) -> tuple[float, float] | None:
        assert self._last is not None
        was, at_before, cpu_before = self._last
        if not was < mark <= count:
            return None
        share = (mark - was) / (count - was)
        return at_before + (at - at_before) * share, cpu_before + (cpu - cpu_before) * share

    def _ends(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The window's interpolated start and end, or a clear error where one was missed."""
        if self._start is None or self._end is None:
            seen = "nothing" if self._last is None else f"{self._last[0]:,} events"
            raise SystemExit(
                f"the window {self.lo:,}-{self.hi:,} events was not seen whole (first observed "
                f"past its start, or the count stopped at {seen}): give more --events, so that "
                "the first batches fall before the window's start"
            )
        return self._start, self._end

    def rate(self) -> float:
        """Events per second of wall-clock time within the window."""
        start, end = self._ends()
        return (self.hi - self.lo) / (end[0] - start[0])

    def cpu_ns(self) -> float:
        """CPU nanoseconds per event within the window."""
        start, end = self._ends()
        return (end[1] - start[1]) * 1e9 / (self.hi - self.lo)


def around(runs: list[tuple[float, float]], round_: int, field: int) -> float:
    """The geometric mean of ``field`` of the runs before and after round ``round_``."""
    return math.sqrt(runs[round_][field] * runs[round_ + 1][field])


@dataclass(frozen=True, slots=True)
class Followed:
    """A daemon run followed to its end: its timed window and its peak RSS in MB."""

    timed: Window
    peak_mb: float


async def follow(
    daemon: ControllerProcess,
    store: RedisAggregateStore,
    n: int,
    window: tuple[float, float],
    *,
    events_per_record: int = 1,
    beside: asyncio.Task[Any] | None = None,
) -> Followed:
    """Poll the daemon's progress in Redis until it flushed ``n`` events.

    Progress is the offsets ``store`` holds over :data:`PARTITIONS` partitions, each
    record ``events_per_record`` events. ``beside`` is work the bench does meanwhile
    (sending the events): its failure ends the run instead of leaving it waiting.
    """
    process = psutil.Process(daemon.pid)
    timed = Window(n, window)
    peak, done, last_report = 0, 0, time.monotonic()
    while done < n:
        peak = max(peak, process.memory_info().rss)
        offsets = [await store.offset(p) for p in range(PARTITIONS)]
        done = sum(o or 0 for o in offsets) * events_per_record
        cpu = process.cpu_times()
        timed.observe(done, time.perf_counter(), cpu.user + cpu.system)
        if time.monotonic() - last_report > 5:
            progress(f"flushed {done:,}/{n:,}")
            last_report = time.monotonic()
        if not daemon.running:
            raise RuntimeError(f"controller died:\n{daemon.log_text()[-3000:]}")
        if beside is not None and beside.done() and beside.exception() is not None:
            raise RuntimeError("the events could not be sent") from beside.exception()
        await asyncio.sleep(0.02)
    return Followed(timed, peak / 2**20)


@dataclass(frozen=True, slots=True)
class DaemonRun:
    """One daemon run's figures: events/s and CPU ns per event in the window, peak RSS
    in MB, and Redis's cost per event over the run (``redis_cost.per_event``)."""

    eps: float
    cpu_ns: float
    peak_mb: float
    redis: dict[str, Any]


async def create_topic(bootstrap: str, topic: str, configs: dict[str, str] | None = None) -> None:
    """Make ``topic`` with :data:`PARTITIONS` partitions (and ``configs``, if any)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        made = NewTopic(topic, PARTITIONS, replication_factor=1, topic_configs=configs or {})
        await admin.create_topics([made])
    finally:
        await admin.close()


async def forget(client: Any, prefix: str) -> None:
    """Delete every key of ``prefix`` from Redis (``client``, a redis.asyncio client)."""
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*")]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])


def window_argument(parser: argparse.ArgumentParser) -> None:
    """``--window FROM TO``: the share of a run's events that every bench here times."""
    parser.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(0.2, 0.9),
        metavar=("FROM", "TO"),
        help="the fractions of the events between which every side is timed",
    )


def event_arguments(parser: argparse.ArgumentParser, *, rounds: int, round_help: str) -> None:
    """The options the ingest benches share: the events made, the rounds, the window, the broker."""
    parser.add_argument("--events", type=int, default=1_000_000, help="events to produce")
    parser.add_argument("--flags", type=int, default=20, help="distinct flags")
    parser.add_argument("--units", type=int, default=200_000, help="distinct units")
    parser.add_argument("--rounds", type=int, default=rounds, help=round_help)
    window_argument(parser)
    parser.add_argument(
        "--broker",
        choices=("auto", "kafka", "tansu", "both"),
        default="auto",
        help="Apache Kafka, the embedded tansu, or both in one run (auto: as the tests choose)",
    )
