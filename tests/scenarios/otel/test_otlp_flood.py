"""An OTLP flood gets back-pressure, not late answers; kills and probes go through it.

Exports of the real OpenTelemetry SDK's spans (3,000 requests each, every one
with a flag evaluated by OpenFeature's hook, gzip as the Collector sends them)
are posted by more clients at once than the controller works on, back to
back, to the real daemon, broker and Redis. The per-client rate is set out of
the way: what is shown is the capacity's own back-pressure. Every answer is a
200, or a 429 or 503 with ``Retry-After``, and none comes later than the
configured answer time allows (well inside exporters' default 10 s
time-out); meanwhile a flag is killed and the probes are answered. Every
connection goes to 127.0.0.1 only; the flood is bounded in clients and
exports and stops once the kill is seen.

    python -m pytest -s tests/scenarios/otel/test_otlp_flood.py   # prints what the flood saw
"""

from __future__ import annotations

import asyncio
import gzip
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from controller.adapters.redis.aggregates import connect
from controller.settings import RedisSettings
from tests.integration.http.test_http import wait_status
from tests.scenarios.harness import Scenario
from tests.scenarios.otel.test_otel_apps import sample
from tests.support.backing.services import free_port
from tests.support.clients.ofrep import flag_rollout, store
from tests.support.otel.otlp_exports import Recorder, evaluate, openfeature_client, traces_proto
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG, KILLED, QUIET = "flood.checkout", "flood.killed", "flood.quiet"
CLIENTS = 8
"""Clients posting back to back: twice the exports worked on at once (2) and waiting
(:data:`WAITING`), so back-pressure is met however fast each export is read."""
WAITING = 2
"""``http.otlp_max_waiting`` here (the default, 8, is met only when reading is slow)."""
SPANS = 3_000
EXPORTS = 6
"""Distinct exports (their trace ids differ), so each one's events are new to the broker."""
MOST_EXPORTS = 400
"""The flood's bound: it stops after this many answers, or once the kill is seen."""
ANSWER_SECONDS = 5.0
"""``http.otlp_answer_seconds`` here (its default)."""
WITHIN = 9.0
"""No answer may come later than this: inside the 10 s an OpenTelemetry exporter waits by
default, with room over the configured answer time for a busy machine's event loop and
this test's own clients to lag; an unbounded line takes far longer (16 to 21 s)."""
RETRYABLE = frozenset({429, 503})
OTLP = {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}


def exports() -> list[bytes]:
    """``EXPORTS`` gzip'd exports of ``SPANS`` requests each, as the SDK's exporter writes
    them; each a copy of one recording with its own trace ids."""
    recorder = Recorder()
    client = openfeature_client({FLAG: "treatment"})
    for i in range(SPANS):
        with recorder.request(status=500 if i % 10 == 0 else 200):
            evaluate(client, FLAG, f"user-{i}")
    base = traces_proto(recorder.spans())
    bodies = []
    for copy in range(EXPORTS):
        request = ExportTraceServiceRequest.FromString(base)
        for span in request.resource_spans[0].scope_spans[0].spans:
            span.trace_id = bytes([copy]) + span.trace_id[1:]
        bodies.append(gzip.compress(request.SerializeToString(), compresslevel=1))
    return bodies


@dataclass
class Flood:
    """Clients posting exports back to back; each answer's status, seconds and Retry-After."""

    base: str
    bodies: list[bytes]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    answers: list[tuple[int, float, str | None]] = field(default_factory=list)

    async def client(self, index: int) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=60) as client:
            sent = index
            while not self.stop.is_set() and len(self.answers) < MOST_EXPORTS:
                body = self.bodies[sent % len(self.bodies)]
                started = time.perf_counter()
                answer = await client.post("/v1/traces", content=body, headers=OTLP)
                took = time.perf_counter() - started
                self.answers.append((answer.status_code, took, answer.headers.get("Retry-After")))
                sent += 1
                if answer.status_code in RETRYABLE:
                    await asyncio.sleep(0.1)  # sooner than Retry-After: a flood, not an exporter

    def statuses(self) -> set[int]:
        return {status for status, _, _ in self.answers}


async def store_rollouts(scenario: Scenario) -> None:
    """Running rollouts of both flags, in force since ten minutes ago."""
    since = datetime.now(UTC) - timedelta(minutes=10)
    times = {"stage_started_at": since, "started_at": since, "updated_at": since}
    rollouts = [flag_rollout(flag, 50).model_copy(update=times) for flag in (FLAG, KILLED, QUIET)]
    async with connect(RedisSettings(url=scenario.redis_url)) as client:
        await store(client, scenario.prefix, rollouts)


async def taken(base: str) -> float:
    """Exports of traces the controller took (``accepted`` or ``partial``), once one was."""

    async def held() -> float:
        metrics = (await wait_status(f"{base}/metrics", 200)).text
        exports = sum(
            sample(metrics, "rollout_otlp_http_exports_total", signal="traces", outcome=outcome)
            for outcome in ("accepted", "partial")
        )
        assert exports > 0, "no export was taken"
        return exports

    return await eventually(held, timeout=120, what="an export of the flood taken")


async def probe(url: str, until: asyncio.Event) -> list[int]:
    """``GET url`` every 0.2 s until ``until``, on a new connection each (as the kubelet)."""
    found: list[int] = []
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=no_reuse) as client:
        while not until.is_set():
            found.append((await client.get(url)).status_code)
            await asyncio.sleep(0.2)
    return found


@pytest.mark.timeout(300)  # its own waits (up to 180 s) run out before pytest's limit
async def test_an_otlp_flood_gets_retry_after_in_time_and_a_kill_goes_through(
    scenario: Scenario,
) -> None:
    port, health_port = free_port(), free_port()
    scenario.configure(
        RC_HTTP__PORT=str(port),
        RC_HTTP__HEALTH_PORT=str(health_port),
        RC_HTTP__REQUIRE_APP_KEYS="false",
        RC_HTTP__OTLP_ITEMS_PER_SECOND="10000000",  # the capacity's back-pressure, not the rate's
        RC_HTTP__OTLP_ANSWER_SECONDS=str(ANSWER_SECONDS),
        RC_HTTP__OTLP_MAX_WAITING=str(WAITING),
        RC_HTTP__INTAKE_ACK_TIMEOUT_SECONDS="30",
        RC_ENGINE__SWEEP_INTERVAL_SECONDS="3600",
    )
    bodies = exports()
    await store_rollouts(scenario)
    scenario.start_daemon()
    base = f"http://127.0.0.1:{port}"
    await wait_status(f"http://127.0.0.1:{health_port}/readyz", 200)
    quiet = await scenario.kill_seconds(QUIET, reason="otlp flood test")
    # Given more clients posting big exports back to back than the controller works on
    flood, probed = Flood(base, bodies), asyncio.Event()
    probes = [
        asyncio.create_task(probe(f"{base}/healthz", probed)),
        asyncio.create_task(probe(f"http://127.0.0.1:{health_port}/healthz", probed)),
    ]
    clients = [asyncio.create_task(flood.client(i)) for i in range(CLIENTS)]
    try:
        await eventually(
            lambda: len(flood.answers) >= 2 * CLIENTS, timeout=180, what="the flood answered"
        )
        # When the operator kills a flag in the middle of it
        flooded = await scenario.kill_seconds(KILLED, reason="otlp flood test")
        during = len(flood.answers)
    finally:
        flood.stop.set()
        probed.set()
        await asyncio.gather(*clients)
        main_probes, health_probes = [await p for p in probes]
    took = sorted(seconds for _, seconds, _ in flood.answers)
    print(
        f"\nkill {flooded:.2f} s in the flood, {quiet:.2f} s without; "
        f"{len(flood.answers)} answers ({during} until the kill): "
        f"{sorted((s, sum(a[0] == s for a in flood.answers)) for s in flood.statuses())}, "
        f"slowest {[round(t, 2) for t in took[-5:]]} s"
    )
    assert ANSWER_SECONDS < WITHIN
    # Then every export was answered: taken, or told to come back later
    assert flood.statuses() <= {200} | RETRYABLE, flood.statuses()
    # ... and the controller worked through it: exports were taken, answered 200 or (on a
    # machine too loaded to finish one within the answer time) answered 503 while their
    # work went on to be taken, which the exporter's copy then counts once
    await taken(base)
    assert flood.statuses() & RETRYABLE, "the flood never met back-pressure"
    assert all(after for status, _, after in flood.answers if status in RETRYABLE)
    # ... none later than the configured answer time allows
    assert took[-1] <= WITHIN, took[-5:]
    # ... the kill was decided and applied while the flood went on
    assert scenario.observed.decision_where(flag=KILLED, action="kill", outcome="applied")
    # ... and every probe, on either port, was answered 200
    assert main_probes
    assert set(main_probes) == {200}, main_probes
    assert set(health_probes) == {200}, health_probes
