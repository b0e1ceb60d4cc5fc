"""``bench/gates.py --prometheus``: gates on guardrails read from a real Prometheus.

Starts Debian's ``prometheus`` (on a free port, its own config and storage) scraping,
every second, an app that counts requests per flag and variant (a counter by status
code and a latency histogram of 14 buckets) for N flags; each flag's counts grow
every second by Poisson draws (2% errors, log-normal latency). Then runs the engine
(in-memory states and aggregates: the Redis side is the main benchmark's) with N
rollouts of a plan gated on two Prometheus guardrails (error rate: count and total
per arm; p95: buckets per arm), each read by its own task every
``--interval`` seconds, and sweeps every flag's gate every second for ``--seconds``.

Every flag's arms are identical (an A/A): ``ended_early`` counts rollouts that did not
stay running (a false rollback or pause), ``unusable_at_end`` the flags whose last reading
a guardrail could not use (an arm seen as not scraped would be a false hold).

Measured: the gate's own CPU (``gate.evaluate`` on the kept readings, against the
same gate on an events-only plan), the queries each reading fills and the requests
it sends (a guardrail's queries go as one), the requests per gate (at this sweep of
every flag each second), the CPU this process spends asking and decoding them (the
app's own CPU taken out), the CPU Prometheus spends answering them (its process,
from ``/proc``), and each request's latency.

    python bench/gates.py --prometheus [--rollouts 100] [--seconds 30] [--interval 5]

The last line printed is one JSON object.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import psutil
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller.adapters.memory import (
    MemoryAggregates,
    MemoryControl,
    MemoryDeadLetters,
    MemoryOutputs,
    MemoryStates,
)
from controller.adapters.prometheus import PrometheusSource
from controller.core.machine import planned_queries
from controller.core.machine.gate import evaluate
from controller.core.metrics_source import Answer
from controller.core.rollouts import parse_plan
from controller.core.rollouts.rollout import CommandInput, Phase, Rollout
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.wire.messages import CommandAction
from controller.daemon.rollouts import SourceReadings, build_engine
from controller.settings import EngineSettings, PrometheusSettings, TopicSettings
from tests.support.backing.prometheus_kit import BUCKETS, BUCKETS_S, COUNT, TOTAL, PrometheusServer
from tests.support.dripping import Dripper, canned

ARMS = {"treatment": "on", "control": "off"}
SHARE = 0.10
"""The stage's percent: treatment's share of each flag's requests."""


class SyntheticApp:
    """/metrics for many flags at once, its counts grown each second in bulk (numpy)."""

    def __init__(self, flags: list[str], rate: float, seed: int = 7) -> None:
        self.flags, self.rate = flags, rate
        self.rng = np.random.default_rng(seed)
        shape = (len(flags), 2)
        self.requests = np.zeros(shape, dtype=np.int64)
        self.errors = np.zeros(shape, dtype=np.int64)
        self.buckets = np.zeros((*shape, len(BUCKETS_S) + 1), dtype=np.int64)
        edges_ms = np.array(BUCKETS_S) * 1000
        body = self.rng.lognormal(math.log(20), 0.3, 200_000)
        counts = np.bincount(np.searchsorted(edges_ms, body), minlength=len(edges_ms) + 1)
        self.shares = counts / counts.sum()
        self._server = Dripper(self._answer)
        self.cpu = 0.0
        """CPU seconds this process spent being the app (growing counts, serving /metrics)."""

    async def start(self) -> str:
        return (await self._server.start()).removeprefix("http://")

    async def close(self) -> None:
        await self._server.close()

    def grow(self, seconds: float) -> None:
        started = time.process_time()
        self._grow(seconds)
        self.cpu += time.process_time() - started

    def _grow(self, seconds: float) -> None:
        expected = np.array([SHARE, 1 - SHARE]) * self.rate * seconds
        new = self.rng.poisson(np.broadcast_to(expected, self.requests.shape))
        self.requests += new
        self.errors += self.rng.binomial(new, 0.02)
        for index in np.ndindex(new.shape):
            self.buckets[index] += self.rng.multinomial(new[index], self.shares)

    async def _answer(self, _m: str, _p: str, _h: dict[str, str], _b: bytes) -> bytes:
        started = time.process_time()
        try:
            return self._exposition()
        finally:
            self.cpu += time.process_time() - started

    def _exposition(self) -> bytes:
        lines = [
            "# TYPE http_requests_total counter",
            "# TYPE http_request_duration_seconds histogram",
        ]
        les = [*(f"{b:g}" for b in BUCKETS_S), "+Inf"]
        for f, flag in enumerate(self.flags):
            for a, variant in enumerate(ARMS.values()):
                labels = f'feature_flag_key="{flag}",feature_flag_variant="{variant}"'
                ok = self.requests[f, a] - self.errors[f, a]
                lines.append(f'http_requests_total{{{labels},code="200"}} {ok}')
                lines.append(f'http_requests_total{{{labels},code="500"}} {self.errors[f, a]}')
                cumulative = np.cumsum(self.buckets[f, a])
                for le, count in zip(les, cumulative, strict=True):
                    lines.append(
                        f'http_request_duration_seconds_bucket{{{labels},le="{le}"}} {count}'
                    )
        return canned(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4")


def plan() -> Any:
    arms = dict(ARMS)
    return parse_plan(
        {
            "stages": [
                {"percent": SHARE * 100, "min_duration": "1h", "min_units_per_arm": 0},
                {"percent": 100, "min_duration": 0, "min_units_per_arm": 0},
            ],
            "guardrails": [
                {
                    "metric": "error_rate",
                    "source": "prometheus",
                    "prometheus": {"count": COUNT, "total": TOTAL, "arms": arms},
                },
                {
                    "metric": "latency_p95",
                    "tolerance": 0.1,
                    "relative": True,
                    "source": "prometheus",
                    "prometheus": {"buckets": BUCKETS, "arms": arms},
                },
            ],
        }
    )


class TimedSource:
    """The real source, each query's latency kept."""

    def __init__(self, source: PrometheusSource) -> None:
        self._source, self.where = source, source.where
        self.latencies: list[float] = []
        self.failures = 0

    async def query(self, promql: str, *, at: datetime) -> Answer:
        started = time.perf_counter()
        try:
            return await self._source.query(promql, at=at)
        except Exception:
            self.failures += 1
            raise
        finally:
            self.latencies.append(time.perf_counter() - started)


def start(flag: str, now: datetime) -> CommandInput:
    return CommandInput(
        action=CommandAction.START,
        flag=flag,
        command_id=f"c-{flag}",
        actor="bench",
        now=now,
        plan=plan(),
        new_rollout_id=f"r-{flag}",
        new_salt="s",
    )


def pure_gates(rollouts: list[Rollout], sources: SourceReadings, rounds: int) -> dict[str, float]:
    """CPU of ``evaluate`` per gate, on the kept readings and on an events-only twin."""
    now = datetime.now(UTC)
    empty = FlagAggregates("f", frozenset({1}), ArmAggregate(), ArmAggregate())
    events_plan = parse_plan(
        {
            "stages": [{"percent": 10}, {"percent": 100}],
            "guardrails": [
                {"metric": "error_rate"},
                {"metric": "latency_p95", "tolerance": 0.1, "relative": True},
            ],
        }
    )
    twins = [r.model_copy(update={"plan": events_plan}) for r in rollouts]
    busy = ArmAggregate(
        requests=10_000,
        errors=200,
        latency_count=10_000,
        latency_histogram=(0,) * 60 + (10_000,) + (0,) * 57,
        units=1000,
        exposures=1000,
    )
    events = FlagAggregates("f", frozenset({1}), busy, busy)

    def timed(work: Any) -> float:
        started = time.process_time()
        for _ in range(rounds):
            work()
        return (time.process_time() - started) / rounds / len(rollouts) * 1000

    sourced = timed(lambda: [evaluate(r, empty, now, sources.view(r, now)) for r in rollouts])
    baseline = timed(lambda: [evaluate(r, events, now) for r in twins])
    return {"gate_cpu_ms_prometheus": sourced, "gate_cpu_ms_events": baseline}


async def run(rollouts: int, seconds: float, interval: float, rate: float) -> dict[str, Any]:
    flags = [f"bench-{i:04d}" for i in range(rollouts)]
    app = SyntheticApp(flags, rate)
    target = await app.start()
    with TemporaryDirectory(prefix="rc-bench-prometheus-") as workdir:
        prometheus = PrometheusServer(Path(workdir), [target])
        await asyncio.to_thread(prometheus.start)
        server = psutil.Process(prometheus.pid)
        try:
            return await _measure(app, prometheus.url, server, flags, seconds, interval)
        finally:
            prometheus.kill()
            await app.close()


async def _measure(
    app: SyntheticApp,
    url: str,
    server: psutil.Process,
    flags: list[str],
    seconds: float,
    interval: float,
) -> dict[str, Any]:
    for _ in range(5):  # history for increase() to read
        app.grow(1.0)
        await asyncio.sleep(1.0)
    settings = PrometheusSettings(
        url=url, interval_seconds=interval, max_in_flight=8, settle_seconds=0
    )
    async with PrometheusSource(settings) as real:
        source = TimedSource(real)
        sources = SourceReadings(
            source=source,
            settings=settings,
            clock=lambda: datetime.now(UTC),
            alert=lambda _f, _a: None,
        )
        states = MemoryStates()
        engine = build_engine(
            settings=EngineSettings(),
            topics=TopicSettings(),
            states=states,
            aggregates=MemoryAggregates(),
            outputs=MemoryOutputs(),
            dead_letters=MemoryDeadLetters(),
            sources=sources,
        )
        now = datetime.now(UTC) - timedelta(seconds=30)
        for flag in flags:
            await engine.rollouts.apply(flag, start(flag, now))
        control = MemoryControl(set(flags))
        async with sources:
            await engine.gates.run_pass(control, full=True)  # every flag followed from now on
            await asyncio.sleep(interval)  # a first reading each
            asked0, gates, cpu0, app0 = sources.asked, 0, time.process_time(), app.cpu
            prom0 = sum(server.cpu_times()[:2])
            gate_cpu = 0.0
            ended = time.monotonic() + seconds
            while time.monotonic() < ended:
                app.grow(1.0)
                started = time.process_time()
                await engine.gates.run_pass(control, full=True)
                gate_cpu += time.process_time() - started
                gates += len(flags)
                await asyncio.sleep(1.0)
            process_cpu = time.process_time() - cpu0 - (app.cpu - app0)
            prom_cpu = sum(server.cpu_times()[:2]) - prom0
            asked = sources.asked - asked0
            readings = round(len(flags) * seconds / interval)
            rollouts = [(await states.load(f)).rollout for f in flags]
            held = sum(1 for r in rollouts if r is not None and r.stage == 0)
            now = datetime.now(UTC)
            views = [sources.view(r, now) for r in rollouts if r is not None]
            unseen = sum(1 for v in views if v is not None and v.unusable)
            rolled_back = sum(1 for r in rollouts if r is not None and r.phase is not Phase.RUNNING)
            pure = pure_gates([r for r in rollouts if r is not None], sources, rounds=20)
    latencies = sorted(source.latencies)
    return {
        "rollouts": len(flags),
        "seconds": seconds,
        "reading_interval_s": interval,
        "gates": gates,
        "requests": asked,
        "request_failures": source.failures,
        "requests_per_gate": asked / gates,
        "requests_per_reading": asked / max(readings, 1),
        "queries_per_reading": asked_per_reading(rollouts[0]) if rollouts[0] else None,
        "gate_loop_cpu_ms_per_gate": gate_cpu / gates * 1000,
        **pure,
        "reading_cpu_ms_per_request": max(process_cpu - gate_cpu, 0.0) / max(asked, 1) * 1000,
        "prometheus_cpu_ms_per_request": prom_cpu / max(asked, 1) * 1000,
        "request_ms_p50": statistics.median(latencies) * 1000 if latencies else None,
        "request_ms_p99": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
        "still_in_first_stage": held,
        "ended_early": rolled_back,
        "unusable_at_end": unseen,
        "cpus": os.cpu_count(),
    }


def asked_per_reading(rollout: Rollout) -> int:
    """The queries one reading of one flag asks (both arms, every query of each guardrail)."""
    return sum(len(q) for q in planned_queries(rollout, datetime.now(UTC)).values())


def main(rollouts: int, seconds: float, interval: float, rate: float) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return asyncio.run(run(rollouts, seconds, interval, rate))
