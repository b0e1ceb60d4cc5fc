"""Joins that wait survive a kill -9: span-form and log-form evaluations, through a relay that
writes every record twice.

The real ``rollout-controller run`` reads the Collector's topics (``otlp_proto``). Its
telemetry is recorded by the real OpenTelemetry Python SDK and encoded by its OTLP encoders:

* span form, as OpenFeature's Python hook records it: the evaluation is an event on an
  INTERNAL span inside the request, whose SERVER span ends later and is exported one
  record after it, so each evaluation waits for its request;
* log form, as the Node ``EventHook`` writes it: a log record named
  ``feature_flag.evaluation`` in the request's trace (with the flag version), on the logs
  topic, its request span on the spans topic one record later.

A relay writes each record twice. The daemon is killed with
SIGKILL while joins wait, the rest is written while it is down, and it is started again.
The exposures, requests and errors of each arm equal the count made from the SDK's own
spans and records: the joins the kill cut were read again from the topics.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from controller.adapters.redis.aggregates import RedisAggregateStore, connect
from controller.settings import RedisSettings
from tests.support.backing.services import free_port
from tests.support.clients.ofrep import flag_rollout
from tests.support.clients.ofrep import store as store_rollouts
from tests.support.controller_process import ControllerProcess, controller_env
from tests.support.otel.otlp_exports import Recorder, logs_proto, traces_proto
from tests.support.otel.otlp_kafka import Expected, assert_counts, counted
from tests.support.otel.relay import Relay, caught_up
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TopicFactory = Callable[..., Awaitable[str]]
PARTITIONS = 2
VERSION = 4
SPAN_FLAG, LOG_FLAG = "join-span", "join-log"
EVALUATION = "feature_flag.evaluation"
PER_RECORD = 10
Cells = dict[tuple[str, int, str], Expected]


def _attributes(flag: str, i: int, rng: random.Random) -> dict[str, str]:
    return {
        "feature_flag.key": flag,
        "feature_flag.result.variant": ("treatment", "control")[(i // 3) % 2],
        "feature_flag.context.id": f"user-{rng.randrange(300)}",
        "feature_flag.version": str(VERSION),
        "feature_flag.provider.name": "rollout-controller",
    }


def _status(i: int) -> int:
    return 500 if i % 7 == 0 else 200


def span_form(recorder: Recorder, n: int, rng: random.Random) -> None:
    """``n`` requests, each evaluating in an INTERNAL span (an event on it)."""
    for i in range(n):
        inner = recorder.tracer.start_as_current_span("price", kind=SpanKind.INTERNAL)
        with recorder.request(status=_status(i)), inner:
            trace.get_current_span().add_event(EVALUATION, _attributes(SPAN_FLAG, i, rng))


def log_form(recorder: Recorder, n: int, rng: random.Random) -> None:
    """``n`` requests, each evaluation a log record in the request's span (Node's EventHook)."""
    for i in range(n):
        with recorder.request(status=_status(i)):
            attributes = _attributes(LOG_FLAG, i, rng)
            recorder.logger.emit(LogRecord(event_name=EVALUATION, attributes=attributes))


def reference(spans: Sequence[ReadableSpan], records: Sequence[ReadableLogRecord]) -> Cells:
    """One exposure per evaluation and one outcome of its SERVER span, read off the SDK."""
    servers = {s.context.span_id: s for s in spans if s.kind is SpanKind.SERVER}
    parents = {s.context.span_id: s.parent.span_id for s in spans if s.parent is not None}
    found: list[tuple[dict[str, object], int]] = []
    for one in spans:
        found += [(dict(e.attributes or {}), parents[one.context.span_id]) for e in one.events]
    for log in records:
        span_id = log.log_record.span_id
        assert span_id is not None
        found.append((dict(log.log_record.attributes or {}), span_id))
    cells: Cells = {}
    for attributes, request in found:
        server = servers[request]
        flag, variant = attributes["feature_flag.key"], attributes["feature_flag.result.variant"]
        cell = cells.setdefault((str(flag), VERSION, str(variant)), Expected())
        cell.exposures += 1
        cell.requests += 1
        status = (server.attributes or {}).get("http.response.status_code")
        cell.errors += server.status.status_code is StatusCode.ERROR or status == 500
        assert server.end_time is not None
        assert server.start_time is not None
        cell.latency_sum_ms += (server.end_time - server.start_time) / 1e6
        cell.units.add(str(attributes["feature_flag.context.id"]))
    return cells


def stream(
    spans: Sequence[ReadableSpan], records: Sequence[ReadableLogRecord]
) -> Iterator[tuple[str, bytes]]:
    """(topic, value) as a Collector would write them: each record's requests end after the
    next record's evaluations, so every evaluation waits for its request a record."""
    servers = {s.context.span_id: s for s in spans if s.kind is SpanKind.SERVER}
    children = [s for s in spans if s.kind is SpanKind.INTERNAL]
    before: list[tuple[str, bytes]] = []
    for i in range(0, max(len(children), len(records)), PER_RECORD):
        kids, logs = children[i : i + PER_RECORD], records[i : i + PER_RECORD]
        yield "spans", traces_proto(kids)
        yield "logs", logs_proto(logs)
        yield from before
        waited = [k.parent.span_id for k in kids if k.parent is not None]
        waited += [r.log_record.span_id for r in logs if r.log_record.span_id is not None]
        before = [("spans", traces_proto([servers[s] for s in waited]))]
    yield from before


async def test_joins_waiting_at_a_kill_9_count_exactly_once_through_a_duplicating_relay(
    kafka_bootstrap: str,
    redis_url: str,
    topic_factory: TopicFactory,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    topics = {
        "events": await topic_factory("events", partitions=2),
        "dlq": await topic_factory("dlq", partitions=1),
        "spans": await topic_factory("otlp-spans", partitions=PARTITIONS),
        "logs": await topic_factory("otlp-logs", partitions=PARTITIONS),
    }
    redis = RedisSettings(url=redis_url, key_prefix=redis_namespace)
    async with connect(RedisSettings(url=redis_url)) as client:
        rollouts = [flag_rollout(f, 50, version=VERSION) for f in (SPAN_FLAG, LOG_FLAG)]
        await store_rollouts(client, redis_namespace, rollouts)
    env = controller_env(
        bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        prefix=redis_namespace,
        events=topics["events"],
        dlq=topics["dlq"],
    ) | {
        "RC_OTLP__ENABLED": "true",
        "RC_OTLP__SPANS_TOPIC": topics["spans"],
        "RC_OTLP__LOGS_TOPIC": topics["logs"],
        "RC_OTLP__MAX_BATCH_RECORDS": "3",
        "RC_HTTP__PORT": str(free_port()),
        "RC_HTTP__HOST": "127.0.0.1",
    }
    seed = uuid.uuid4().int % 2**32
    rng = random.Random(seed)
    recorder = Recorder()
    span_form(recorder, 600, rng)
    log_form(recorder, 600, rng)
    spans, records = recorder.spans(), recorder.records()
    want = reference(spans, records)
    values = list(stream(spans, records))
    cut = rng.randrange(len(values) // 3, 2 * len(values) // 3)
    target = rng.randrange(3 * cut, 6 * cut)  # of the about 10 events each value holds
    relay = Relay(kafka_bootstrap, topics, partitions=PARTITIONS)

    async def read() -> int:
        async with connect(redis) as client:
            reads = RedisAggregateStore(client, settings=redis, topic=topics["events"])
            flags = [(SPAN_FLAG, {VERSION}), (LOG_FLAG, {VERSION})]
            return counted(await reads.read_many(flags))

    daemon = ControllerProcess(env=env, log_path=tmp_path / "controller.log")
    daemon.start()
    try:
        # Given the daemon reading what the relay writes, every record twice
        producing = asyncio.create_task(relay.send(values[:cut], pace=0.05))

        async def reached() -> bool:
            got = await read()
            assert got >= target, f"{got} of {target} (seed {seed})\n{daemon.log_text()[-2000:]}"
            return True

        await eventually(reached, timeout=120, what=f"{target} events counted")
        # When it is killed with SIGKILL while evaluations wait for their requests
        daemon.kill()
        await producing
        await relay.send(values[cut:])
        daemon.start()
        await caught_up(redis, events=topics["events"], topics=topics, relay=relay, daemon=daemon)
        # Then each arm's exposures, requests and errors are exact: nothing lost, nothing twice
        async with connect(redis) as client:
            reads = RedisAggregateStore(client, settings=redis, topic=topics["events"])
            await assert_counts(reads, want)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
