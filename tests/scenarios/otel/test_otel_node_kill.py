"""A Node app's evaluations, as log records, counted exactly once across a kill -9.

The app (``tests/otel/node_app.mjs``) uses only OpenFeature's server SDK, its OFREP
provider, OpenFeature's OpenTelemetry ``EventHook`` (each evaluation a log record named
``feature_flag.evaluation`` in its request's span, with the flag version OFREP's metadata
gave) and the OpenTelemetry SDK for Node, exporting OTLP/HTTP to the real Collector, which
writes its spans and log records to Kafka (``ops/otelcol/config.yaml``). Users send it
requests while the daemon serves it the flag; the app then says what it served.

A relay takes the Collector's records to the topics the daemon reads and writes each one
twice, its spans a second behind the log records (two pipelines need not keep pace), so
evaluations wait for their requests. Once the daemon has flushed every record written so
far, it is killed with SIGKILL: the log records are counted, their requests wait in its
memory. The rest is written while it is down, and it is started again. Each arm's
exposures, requests and errors equal what the app served, one exposure and one request
outcome per evaluation: the joins the kill cut were read again from the topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Stage
from controller.dev.otelcol import Collector
from controller.settings import RedisSettings
from tests.otel.load import AppProcess, Load
from tests.scenarios.harness import Scenario
from tests.scenarios.otel.test_otel_apps import APPS
from tests.scenarios.otel.worlds import collector_world, start_reading_otlp
from tests.support.otel.collector_kit import (
    APP_ATTRIBUTE,
    Written,
    assert_counted,
    read_stamped,
    written_logs,
)
from tests.support.otel.otlp_kafka import EVALUATION
from tests.support.otel.relay import Relay, caught_up
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLAG = "node.checkout-kill"
REQUESTS = 600
PARTITIONS = 2
SPANS_LAG_MS = 1000
"""How far the relay's spans run behind its log records, in the Collector's record time."""
Stamped = list[tuple[int, bytes]]


@pytest.fixture
async def world(
    otelcol: Path, real_kafka: str, redis_url: str, redis_namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[Scenario, Collector]]:
    """The Collector's topics (``col.spans``, ``col.logs``), the relay's (``spans``,
    ``logs``: the daemon reads these), a Collector writing to its own, and a scenario."""
    async with collector_world(
        kafka=real_kafka,
        redis_url=redis_url,
        prefix=redis_namespace,
        workdir=tmp_path,
        label="nodekill",
        partitions={"events": 2, "spans": PARTITIONS, "logs": PARTITIONS},
        extra=("col.spans", "col.logs"),
        collector_writes=("col.spans", "col.logs"),
    ) as made:
        yield made


def steady() -> Plan:
    """Half and half for longer than the test, no guardrail to end it: one flag version."""
    stage = Stage(percent=50, min_duration=timedelta(minutes=20), min_units_per_arm=0)
    return Plan(stages=[stage, Stage(percent=100, min_units_per_arm=0)], guardrails=[])


@pytest.mark.timeout(300)
async def test_a_node_apps_log_record_evaluations_count_once_across_a_relay_and_a_kill_9(
    world: tuple[Scenario, Collector], otel_node: tuple[str, Path]
) -> None:
    scenario, collector = world
    base = start_reading_otlp(
        scenario,
        RC_OTLP__MAX_BATCH_RECORDS="3",
        # On the records' times: a busy machine's wait before the kill must not expire joins
        RC_HTTP__OTLP_JOIN_WINDOW_SECONDS="120",
    )
    await scenario.start(FLAG, steady())
    state = await scenario.until(partial(_served, scenario), timeout=30, what=f"{FLAG} served")

    # Given a Node app, OpenFeature's EventHook and the OTel SDK, exporting to the Collector
    said, load = await _serve_users(base, collector, otel_node)
    await asyncio.to_thread(collector.stop)  # what it accepted is on Kafka first
    spans, _ = await read_stamped(scenario.bootstrap, scenario.topics["col.spans"], 1)
    logs, _ = await read_stamped(scenario.bootstrap, scenario.topics["col.logs"], 1)
    written = written_logs([v for _, v in spans], [v for _, v in logs])
    _assert_what_the_app_sent(said, load, written)

    # When a relay writes every record twice, its spans a second behind
    values = _relayed(spans, logs)
    cut, waiting = _cut(values)
    relay = Relay(scenario.bootstrap, scenario.topics, partitions=PARTITIONS)
    redis = RedisSettings(url=scenario.redis_url, key_prefix=scenario.prefix)
    flushed = partial(
        caught_up, redis, events=scenario.topics["events"], topics=scenario.topics, relay=relay
    )
    await relay.send(values[:cut], pace=0.02)
    await flushed(daemon=scenario.daemon)
    # ... and the daemon, every record so far flushed and evaluations waiting for their
    # requests, is killed with SIGKILL; the rest is written while it is down
    scenario.daemon.kill()
    await relay.send(values[cut:])
    await asyncio.to_thread(scenario.start_daemon)
    await flushed(daemon=scenario.daemon)

    # Then each arm's exposures, requests and errors are what the app served, exactly
    async with connect(redis) as client:
        store = RedisAggregateStore(client, settings=redis, topic=scenario.topics["events"])
        got = await assert_counted(store, FLAG, int(state["version"]), written)
    arms = {"treatment": got.treatment, "control": got.control}
    counts = {arm: {"requests": a.requests, "errors": a.errors} for arm, a in arms.items()}
    assert counts == said["served"], f"{waiting} evaluations waited at the kill"
    assert all(a.exposures == a.requests for a in arms.values()), arms


def _served(scenario: Scenario) -> dict[str, Any] | None:
    return next((s for s in scenario.observed.flag_states if s["flag"] == FLAG), None)


async def _serve_users(
    ofrep: str, collector: Collector, otel_node: tuple[str, Path]
) -> tuple[dict[str, Any], Load]:
    """Start the app, send it :data:`REQUESTS` users' requests, stop it: what it said it
    served, and the load's own count of the answers."""
    node, home = otel_node
    command = [node, str(APPS / "node_app.mjs"), ofrep, collector.otlp_http_url, FLAG]
    env = {"OFREP_NODE_HOME": str(home), "OTEL_RESOURCE_ATTRIBUTES": f"{APP_ATTRIBUTE}={FLAG}"}
    faults = ["--errors", "0.1,0.2", "--latency-ms", "5,5"]
    app = await AppProcess.start([*command, *faults], name=FLAG, env=env)
    load = Load(app, users=400, concurrency=4, seed=11)
    try:

        def enough() -> bool:
            assert load.requests >= REQUESTS, f"{load.requests} of {REQUESTS} requests"
            return True

        await eventually(enough, timeout=120, what=f"{REQUESTS} requests served")
    finally:
        await load.stop()
        assert await app.stop() == 0, "the Node app did not exit cleanly"
    said: dict[str, Any] = orjson.loads(app.last_words)
    return said, load


def _assert_what_the_app_sent(said: dict[str, Any], load: Load, written: Written) -> None:
    """The app's account, its users' answers and the Collector's records agree."""
    served = said["served"]
    assert set(served) == {"treatment", "control"}, said
    treated = sum(n for (new_flow, _), n in load.served.items() if new_flow)
    assert treated == served["treatment"]["requests"], (load.served, said)
    assert (
        load.requests == sum(c["requests"] for c in served.values()) + said["failed_evaluations"]
    ), (load.statuses, said)
    assert load.failures == 0, load.failed
    assert written.spans[FLAG] == load.requests, (written.spans, load.requests)
    for arm, counts in served.items():
        cell = written.cells[FLAG, arm]
        assert (cell.exposures, cell.requests, cell.errors) == (
            counts["requests"],
            counts["requests"],
            counts["errors"],
        ), arm


def _relayed(spans: Stamped, logs: Stamped) -> list[tuple[str, bytes]]:
    """The Collector's records in the order the relay writes them: by record time, each
    spans record :data:`SPANS_LAG_MS` later than the Collector wrote it."""
    timed = [(t, 0, "logs", v) for t, v in logs] + [
        (t + SPANS_LAG_MS, 1, "spans", v) for t, v in spans
    ]
    return [(signal, value) for _, _, signal, value in sorted(timed, key=lambda x: x[:2])]


def _cut(values: list[tuple[str, bytes]]) -> tuple[int, int]:
    """Where in its middle third the stream cuts the most evaluations from their requests,
    and how many it cuts there (at least one)."""
    first_span: dict[bytes, int] = {}
    for index, (signal, value) in enumerate(values):
        if signal == "spans":
            for span_id in _spans_of(value):
                first_span.setdefault(span_id, index)
    best = (0, 0)
    evaluated: list[tuple[int, bytes]] = []
    for index, (signal, value) in enumerate(values):
        if signal == "logs":
            evaluated += [(index, s) for s in _evaluations_of(value)]
        if len(values) // 3 <= index + 1 <= 2 * len(values) // 3:
            waiting = sum(1 for _, s in evaluated if first_span.get(s, -1) > index)
            best = max(best, (waiting, index + 1))
    assert best[0] > 0, "no cut leaves an evaluation waiting for its request"
    return best[1], best[0]


def _spans_of(value: bytes) -> list[bytes]:
    export = ExportTraceServiceRequest.FromString(value)
    return [
        span.span_id
        for resource in export.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]


def _evaluations_of(value: bytes) -> list[bytes]:
    export = ExportLogsServiceRequest.FromString(value)
    return [
        record.span_id
        for resource in export.resource_logs
        for scope in resource.scope_logs
        for record in scope.log_records
        if record.event_name == EVALUATION
    ]
