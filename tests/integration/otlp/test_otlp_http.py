"""OTLP/HTTP through the daemon: exports of the real OpenTelemetry SDK counted once, exactly.

Spans and log records are recorded by the OpenTelemetry SDK (flag
evaluations by OpenFeature's own ``TracingHook``) and encoded by the OTLP
exporter's own encoders, in protobuf and in JSON (``tests/support/otel/otlp_exports.py``);
they are posted to ``/v1/traces`` and ``/v1/logs`` of a real daemon, and the
aggregates it counted are compared with a reference fold of the events the
telemetry describes. Every export is sent twice, and once more after the
daemon was killed (``kill -9``): the copies count nothing.
Hostile telemetry gets a 4xx or a partial success naming what was not
counted, each refused item reaches the DLQ with its reason, the daemon
stays up and the rest of the export is counted. The broker taken away
gives a 503 (nothing counted) and the export sent again counts once.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry import trace
from opentelemetry._logs import LogRecord
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from controller.adapters.redis.aggregates import connect
from controller.settings import RedisSettings
from tests.integration.http.test_http import wait_status
from tests.integration.http.test_http_intake import Gate, gate  # noqa: F401 (the fixture)
from tests.integration.rig import Rig, flags_of
from tests.support.backing.services import free_port
from tests.support.clients.ofrep import flag_rollout, node_home, store
from tests.support.controller_process import ControllerProcess
from tests.support.otel.otlp_exports import (
    Recorder,
    evaluate,
    logs_json,
    logs_proto,
    openfeature_client,
    traces_json,
    traces_proto,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

FLAG = "otlp.checkout"
VERSION = 3  # the rig reads versions 1 to 3
PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
EVALUATION = "feature_flag.evaluation"
LONE_SURROGATE = "LONESURROGATE"
"""A marker replaced by text that is not UTF-8 once the export is encoded."""


# --------------------------------------------------------------------------------------
# Telemetry, and the events it describes
# --------------------------------------------------------------------------------------


def served(
    recorder: Recorder, variant: str, units: list[str], *, fail_every: int = 5
) -> list[ReadableSpan]:
    """One request per unit, its flag evaluated by OpenFeature's hook (a span event, no
    version); every ``fail_every``-th request answers 500. The spans it made."""
    client = openfeature_client({FLAG: variant})
    before = len(recorder.spans())
    for i, unit in enumerate(units):
        with recorder.request(status=500 if i % fail_every == 0 else 200):
            evaluate(client, FLAG, unit)
    return recorder.spans()[before:]


def logged(recorder: Recorder, variant: str, units: list[str]) -> list[ReadableSpan]:
    """One request per unit whose evaluation is a log record in its trace (as Node's
    ``EventHook`` writes it, with the version), the request span exported apart."""
    before = len(recorder.spans())
    for i, unit in enumerate(units):
        with recorder.request(status=503 if i % 4 == 0 else 200):
            attributes = {
                "feature_flag.key": FLAG,
                "feature_flag.result.variant": variant,
                "feature_flag.context.id": unit,
                "feature_flag.version": str(VERSION),
            }
            recorder.logger.emit(LogRecord(event_name=EVALUATION, attributes=attributes))
    return recorder.spans()[before:]


def described(
    spans: list[ReadableSpan], arms: dict[str, str], units: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """The events the requests describe, an exposure and an outcome each: the reference.

    A request's unit is its evaluation's (a span event), else ``units`` by span id."""
    events: list[dict[str, Any]] = []
    for span in spans:
        assert span.kind is SpanKind.SERVER
        assert span.attributes is not None
        assert span.start_time is not None
        assert span.end_time is not None
        unit = _unit(span, units or {})
        base = {"v": 1, "ts": 0, "flag": FLAG, "flag_version": VERSION, "unit": unit}
        base["arm"] = arms[unit]
        status = span.attributes["http.response.status_code"]
        assert isinstance(status, int | float)  # a whole double reads as its int
        latency = (span.end_time - span.start_time) / 1e6
        events.append({**base, "type": "exposure", "id": f"x-{unit}"})
        request = {"type": "request", "id": f"r-{unit}", "error": status >= 500}
        events.append({**base, **request, "latency_ms": latency})
    return events


def _unit(span: ReadableSpan, units: dict[int, str]) -> str:
    for event in span.events:
        unit = (event.attributes or {}).get("feature_flag.context.id")
        if isinstance(unit, str):
            return unit
    return units[span.context.span_id]


def status_message(answer: httpx.Response) -> tuple[int, str]:
    """A refusal's ``google.rpc.Status`` (code, message), in the encoding it came in."""
    if answer.headers["Content-Type"].startswith("application/json"):
        found = orjson.loads(answer.content)
        return found["code"], found["message"]
    status = Status.FromString(answer.content)
    return status.code, status.message


# --------------------------------------------------------------------------------------
# The daemon, its flags, and sending
# --------------------------------------------------------------------------------------


async def publish(rig: Rig, flags: dict[str, int]) -> None:
    """Rollouts of ``flags`` at their versions, in force since ten minutes ago."""
    since = datetime.now(UTC) - timedelta(minutes=10)
    times = {"stage_started_at": since, "started_at": since, "updated_at": since}
    rollouts = [
        flag_rollout(flag, 50, version=version).model_copy(update=times)
        for flag, version in flags.items()
    ]
    async with connect(RedisSettings(url=rig.redis_url)) as client:
        await store(client, rig.prefix, rollouts)


@asynccontextmanager
async def serving(
    rig: Rig, tmp_path: Path, **env: str
) -> AsyncIterator[tuple[httpx.AsyncClient, ControllerProcess]]:
    port = free_port()
    rig.env.update(
        {
            "RC_HTTP__PORT": str(port),
            "RC_HTTP__INTAKE_ACK_TIMEOUT_SECONDS": "3",
            # keys: tests/scenarios/operators/test_app_keys.py
            "RC_HTTP__REQUIRE_APP_KEYS": "false",
            **env,
        }
    )
    base = f"http://127.0.0.1:{port}"
    with rig.daemon(tmp_path) as daemon:
        await wait_status(f"{base}/readyz", 200)
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield client, daemon


async def restarted(daemon: ControllerProcess, client: httpx.AsyncClient) -> None:
    """The daemon killed (``kill -9``: its join buffer lost with it) and started again."""
    daemon.kill()
    await eventually(lambda: not daemon.running, timeout=30, what="the daemon gone")
    daemon.start()
    await wait_status(f"{client.base_url}/readyz", 200)


async def export(
    client: httpx.AsyncClient,
    path: str,
    body: bytes,
    headers: dict[str, str],
    seen: Counter[str] | None = None,
) -> httpx.Response:
    """Send one export as an exporter does: again after ``Retry-After`` on a 429 or 503."""
    while True:
        answer = await client.post(path, content=body, headers=headers)
        if seen is not None:
            seen[str(answer.status_code)] += 1
        if answer.status_code not in (429, 503):
            return answer
        assert "Retry-After" in answer.headers
        await asyncio.sleep(min(1.0, float(answer.headers["Retry-After"])))


def partial_success(answer: httpx.Response, path: str) -> tuple[int, str]:
    """The rejected count and message of a 200, in the encoding it was asked in."""
    assert answer.status_code == 200, answer.content[:500]
    if answer.headers["Content-Type"].startswith("application/json"):
        partial = orjson.loads(answer.content).get("partialSuccess", {})
        count = partial.get("rejectedSpans", partial.get("rejectedLogRecords", "0"))
        return int(count), partial.get("errorMessage", "")
    message: Any = (
        ExportTraceServiceResponse() if path == "/v1/traces" else ExportLogsServiceResponse()
    )
    message.ParseFromString(answer.content)
    part = message.partial_success
    count = part.rejected_spans if path == "/v1/traces" else part.rejected_log_records
    return int(count), str(part.error_message)


# --------------------------------------------------------------------------------------
# Counted once, exactly
# --------------------------------------------------------------------------------------


async def test_real_sdk_exports_in_both_encodings_are_counted_once_each(
    rig: Rig, tmp_path: Path
) -> None:
    # Given a flag under rollout at version 3, and an app's telemetry of 150 requests
    await publish(rig, {FLAG: VERSION})
    recorder = Recorder()
    units = [f"user-{i}" for i in range(150)]
    treated, control, logged_units = units[:60], units[60:110], units[110:]
    spans_t = served(recorder, "treatment", treated)
    spans_c = served(recorder, "control", control, fail_every=3)
    spans_l = logged(recorder, "treatment", logged_units)
    records = recorder.records()
    arms = dict.fromkeys(treated + logged_units, "treatment") | dict.fromkeys(control, "control")
    by_span = {span.context.span_id: u for span, u in zip(spans_l, logged_units, strict=True)}
    reference = described(spans_t + spans_c + spans_l, arms, by_span)
    exports = [
        ("/v1/traces", traces_proto(spans_t), PROTOBUF),
        ("/v1/traces", traces_json(spans_c), JSON),
        # a log record's evaluation arrives before its request's span: joined later
        ("/v1/logs", logs_json(records[: len(records) // 2]), JSON),
        ("/v1/logs", logs_proto(records[len(records) // 2 :]), PROTOBUF),
        ("/v1/traces", traces_proto(spans_l), PROTOBUF),
    ]
    seen: Counter[str] = Counter()
    async with serving(
        rig, tmp_path, RC_HTTP__OTLP_ITEMS_PER_SECOND="200", RC_HTTP__OTLP_MAX_ITEMS="100"
    ) as (client, daemon):
        # When each export is sent, then each again (an exporter's retry, a Collector's),
        # then the daemon is killed and every export sent a third time
        for again in range(3):
            if again == 2:
                await restarted(daemon, client)
            for path, body, headers in exports:
                answer = await export(client, path, body, headers, seen)
                assert partial_success(answer, path) == (0, ""), answer.content
        # Then every event the telemetry describes is counted once: no more, no less
        await rig.settle()
        await rig.assert_exact(reference)
        assert await rig.counted(flags_of(reference)) == len(reference) == 300
    # ... and the client past its rate (200 items a second) was told to wait, not refused
    assert seen["429"] >= 1, seen
    assert set(seen) == {"200", "429"}, seen


# --------------------------------------------------------------------------------------
# Hostile telemetry
# --------------------------------------------------------------------------------------


def hostile_spans(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Spans an app should not send, each with the reason it is refused for."""

    def span(name: str, **changes: Any) -> dict[str, Any]:
        return template | {"spanId": uuid.uuid4().hex[:16], "name": name} | changes

    def evaluation(flag: str, variant: str, **extra: str) -> dict[str, Any]:
        pairs = {
            "feature_flag.key": flag,
            "feature_flag.result.variant": variant,
            "feature_flag.context.id": "user-hostile",
            **extra,
        }
        attributes = [{"key": k, "value": {"stringValue": v}} for k, v in pairs.items()]
        return {
            "name": EVALUATION,
            "timeUnixNano": template["startTimeUnixNano"],
            "attributes": attributes,
        }

    many = [{"key": f"k{i}", "value": {"intValue": str(i)}} for i in range(10_000)]
    return [
        ("oversize", span("10k attributes", attributes=many, events=[])),
        ("malformed", span(LONE_SURROGATE, events=[])),  # made a lone surrogate once encoded
        ("malformed", span("wrong types", startTimeUnixNano={"not": "a time"}, events=[])),
        ("unknown_variant", span("purple", events=[evaluation(FLAG, "purple")])),
        (
            "bad_version",
            span(
                "bad version",
                events=[evaluation(FLAG, "control", **{"feature_flag.version": "v-one"})],
            ),
        ),
    ]


def with_hostile(good: bytes) -> tuple[bytes, Counter[str]]:
    """The JSON export ``good`` with hostile spans added beside its own; their reasons."""
    tree = orjson.loads(good)
    scope = tree["resourceSpans"][0]["scopeSpans"][0]
    hostile = hostile_spans(scope["spans"][0])
    scope["spans"] = scope["spans"][:3] + [s for _, s in hostile] + scope["spans"][3:]
    # A value nested 20 deep on a good span, and its 64 KiB stack trace: not read, so
    # they cost it nothing.
    deep: dict[str, Any] = {"stringValue": "bottom"}
    for _ in range(20):
        deep = {"arrayValue": {"values": [deep]}}
    trace = {"stringValue": "Traceback (most recent call last):\n" + "  x\n" * 16_384}
    scope["spans"][0]["attributes"] += [
        {"key": "deep", "value": deep},
        {"key": "exception.stacktrace", "value": trace},
    ]
    body = orjson.dumps(tree).replace(f'"{LONE_SURROGATE}"'.encode(), b'"\\ud800"')
    return body, Counter(reason for reason, _ in hostile)


def proto_with_bad_text(good: bytes) -> bytes:
    """The protobuf export ``good`` with its first span's name not UTF-8."""
    request = ExportTraceServiceRequest.FromString(good)
    request.resource_spans[0].scope_spans[0].spans[0].name = LONE_SURROGATE
    return request.SerializeToString().replace(
        LONE_SURROGATE.encode(), b"\xff" * len(LONE_SURROGATE)
    )


def proto_with_many_attributes(good: bytes) -> bytes:
    """The protobuf export ``good`` with 10,000 attributes on its first span."""
    request = ExportTraceServiceRequest.FromString(good)
    first = request.resource_spans[0].scope_spans[0].spans[0]
    first.attributes.extend(
        KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(10_000)
    )
    return request.SerializeToString()


def bomb() -> bytes:
    """A gzip body of a few hundred KiB that inflates to 200 MB."""
    return gzip.compress(b"\x00" * 200_000_000, compresslevel=9)


async def test_hostile_telemetry_gets_a_4xx_or_a_partial_success_and_dead_letters(
    rig: Rig, tmp_path: Path
) -> None:
    await publish(rig, {FLAG: VERSION})
    recorder = Recorder()
    units = [f"user-{i}" for i in range(40)]
    json_spans = served(recorder, "treatment", units[:20])
    proto_spans = served(recorder, "control", units[20:34])
    bad_spans = served(recorder, "control", units[34:])
    variants = dict.fromkeys(units[:20], "treatment") | dict.fromkeys(units[20:], "control")
    # the first proto span carries 10k attributes, the first of the bad ones a name not
    # UTF-8: each refused, so not in the reference
    reference = described(json_spans + proto_spans[1:] + bad_spans[1:], variants)
    hostile_json, reasons = with_hostile(traces_json(json_spans))
    async with serving(rig, tmp_path) as (client, _):
        # An export with hostile spans among good ones: 200, the hostile ones named
        answer = await export(client, "/v1/traces", hostile_json, JSON)
        rejected, message = partial_success(answer, "/v1/traces")
        assert rejected == sum(reasons.values()) == 5, message
        assert all(reason in message for reason in reasons), message
        answer = await export(
            client, "/v1/traces", proto_with_many_attributes(traces_proto(proto_spans)), PROTOBUF
        )
        assert partial_success(answer, "/v1/traces")[0] == 1
        # A span protobuf cannot parse (not UTF-8): refused alone, its 5 siblings counted
        answer = await export(
            client, "/v1/traces", proto_with_bad_text(traces_proto(bad_spans)), PROTOBUF
        )
        rejected, message = partial_success(answer, "/v1/traces")
        assert (rejected, "malformed" in message) == (1, True), message
        # Bodies that are no export at all: a 4xx with the reason, in the request's encoding
        answers = {
            "bomb": await client.post(
                "/v1/traces", content=bomb(), headers=PROTOBUF | {"Content-Encoding": "gzip"}
            ),
            "not gzip": await client.post(
                "/v1/traces", content=b"plain", headers=JSON | {"Content-Encoding": "gzip"}
            ),
            "not an export": await client.post("/v1/logs", content=b"[1, 2]", headers=JSON),
            "not protobuf": await client.post("/v1/traces", content=b"\xff" * 64, headers=PROTOBUF),
            "text": await client.post(
                "/v1/traces", content=b"hi", headers={"Content-Type": "text/plain"}
            ),
            "snappy": await client.post(
                "/v1/logs", content=b"{}", headers=JSON | {"Content-Encoding": "snappy"}
            ),
            "br": await client.post(
                "/v1/traces", content=b"\x0b\x01\x80", headers=PROTOBUF | {"Content-Encoding": "br"}
            ),
            "zstd": await client.post(
                "/v1/logs", content=b"{}", headers=JSON | {"Content-Encoding": "zstd"}
            ),
        }
        statuses = {name: a.status_code for name, a in answers.items()}
        assert statuses == {
            "bomb": 413,
            "not gzip": 400,
            "not an export": 400,
            "not protobuf": 400,
            "text": 415,
            "snappy": 415,
            "br": 415,
            "zstd": 415,
        }
        assert status_message(answers["bomb"]) == (8, "the body inflates past 16777216 bytes")
        assert status_message(answers["not an export"])[0] == 3  # INVALID_ARGUMENT
        assert status_message(answers["text"])[0] == 3
        # an encoding the server cannot inflate is the documented 415, in the request's encoding
        assert status_message(answers["br"]) == (
            3,
            "the body may be sent gzip or identity, not 'br'",
        )
        assert answers["zstd"].headers["Content-Type"] == "application/json"
        assert status_message(answers["zstd"])[0] == 3
        # Then the daemon is up, every good span counted, and each refusal dead-lettered
        await wait_status(f"{client.base_url}/healthz", 200)
        await rig.settle()
        await rig.assert_exact(reference)
        letters = await rig.dead_letters(7)
    found = Counter(dict(r.headers)["rc.reason"].decode() for r in letters)
    assert found == reasons + Counter({"oversize": 1, "malformed": 1}), found
    for record in letters:
        headers = dict(record.headers)
        assert headers["rc.source.topic"] == b"otlp-http:/v1/traces"
        letter = orjson.loads(record.value)
        assert (letter["route"], letter["reason"]) == (
            "otlp-http:/v1/traces",
            headers["rc.reason"].decode(),
        )
        assert len(record.value) < 2000


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    """A sample of the daemon's ``/metrics`` (0 when it has none yet)."""
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


async def test_an_apps_ordinary_flags_are_ignored_not_refused_nor_dead_lettered(
    rig: Rig, tmp_path: Path
) -> None:
    # Given an app that evaluates, beside the flag under rollout, flags no rollout published
    await publish(rig, {FLAG: VERSION})
    recorder = Recorder()
    units = [f"user-{i}" for i in range(20)]
    spans = served(recorder, "treatment", units)
    reference = described(spans, dict.fromkeys(units, "treatment"))
    ordinary = openfeature_client({"dark-mode": "treatment", "new-footer": "control"})
    for unit in units:
        with recorder.request(status=200):
            evaluate(ordinary, "dark-mode", unit)
            evaluate(ordinary, "new-footer", unit)
    tree = orjson.loads(traces_json(recorder.spans()))
    # ... and one span with a bad version: the one refusal, a positive signal for the DLQ
    scope = tree["resourceSpans"][0]["scopeSpans"][0]
    scope["spans"].append(dict(hostile_spans(scope["spans"][0])[-1][1]))
    async with serving(rig, tmp_path) as (client, _):
        # When the app exports its spans
        answer = await export(client, "/v1/traces", orjson.dumps(tree), JSON)
        # Then only the bad version is refused: the ordinary flags are no error
        rejected, message = partial_success(answer, "/v1/traces")
        assert rejected == 1, message
        assert "bad_version x1" in message
        assert "unknown_flag" not in message
        letters = await rig.every_dead_letter()
        assert [dict(r.headers)["rc.reason"] for r in letters] == [b"bad_version"]
        # ... they are counted apart, and nothing the alert on refusals reads
        ignored = await metric(
            client, "rollout_otlp_ignored_evaluations_total", path="http", signal="traces"
        )
        assert ignored == 2 * len(units)
        refused = await metric(
            client, "rollout_otlp_http_refused_total", signal="traces", reason="bad_version"
        )
        assert refused == 1
        # ... and the flag under rollout is counted exactly
        await rig.settle()
        await rig.assert_exact(reference)


def timed_request(recorder: Recorder, unit: str, start_ns: int, end_ns: int) -> None:
    """A SERVER span with its flag evaluated (OpenFeature's hook), at the times given, as an
    SDK records them when the app names them (or its clock is wrong)."""
    client = openfeature_client({FLAG: "treatment"})
    span = recorder.tracer.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=start_ns)
    with trace.use_span(span, end_on_exit=False):
        evaluate(client, FLAG, unit)
    span.set_attribute("http.response.status_code", 200)
    span.end(end_time=end_ns)


async def test_a_span_at_an_implausible_time_is_refused_alone(rig: Rig, tmp_path: Path) -> None:
    # Given requests of the real SDK, among them one that ends before it starts and one
    # that ends at 2^63 ns (a one-day request dated 2262, were it clamped)
    await publish(rig, {FLAG: VERSION})
    recorder = Recorder()
    units = [f"user-{i}" for i in range(10)]
    good = served(recorder, "treatment", units)
    now = time.time_ns()
    timed_request(recorder, "user-backwards", now, now - 5_000_000)
    timed_request(recorder, "user-2262", now, 2**63 - 1)
    reference = described(good, dict.fromkeys(units, "treatment"))
    async with serving(rig, tmp_path) as (client, _):
        # When the app exports them together
        answer = await export(client, "/v1/traces", traces_proto(recorder.spans()), PROTOBUF)
        # Then the two are refused, each alone, with its reason; the others count exactly
        rejected, message = partial_success(answer, "/v1/traces")
        assert rejected == 2, message
        assert "bad_time x2" in message, message
        letters = await rig.every_dead_letter()
        details = sorted(dict(r.headers)["rc.detail"].decode() for r in letters)
        assert [dict(r.headers)["rc.reason"] for r in letters] == [b"bad_time"] * 2
        assert "ends 5.000 ms before it starts" in details[0], details
        assert "longer than a day" in details[1], details
        await rig.settle()
        await rig.assert_exact(reference)


def statused_request(recorder: Recorder, unit: str, status: object) -> None:
    """A SERVER span with its flag evaluated (OpenFeature's hook), whose HTTP status is
    ``status`` as the app set it: an int, a double or a string."""
    client = openfeature_client({FLAG: "treatment"})
    with recorder.tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as span:
        evaluate(client, FLAG, unit)
        span.set_attribute("http.response.status_code", status)  # type: ignore[arg-type]


UNREADABLE_STATUSES = {"nan": math.nan, "inf": math.inf, "fraction": 500.5, "text": "500"}


async def test_a_whole_double_http_status_is_read_and_the_rest_refused_alone(
    rig: Rig, tmp_path: Path
) -> None:
    # Given requests of the real SDK whose HTTP status is an int, a whole double (a failure
    # and a success), and four that are no whole number: NaN, infinity, 500.5, "500"
    await publish(rig, {FLAG: VERSION})
    recorder = Recorder()
    units = [f"user-{i}" for i in range(10)]
    good = served(recorder, "treatment", units)
    statused_request(recorder, "user-double-500", 500.0)
    statused_request(recorder, "user-double-200", 200.0)
    doubles = recorder.spans()[-2:]
    for name, status in UNREADABLE_STATUSES.items():
        statused_request(recorder, f"user-{name}", status)
    arms = dict.fromkeys([*units, "user-double-500", "user-double-200"], "treatment")
    reference = described([*good, *doubles], arms)
    assert [e["error"] for e in reference if e["type"] == "request"][-2:] == [True, False]
    async with serving(rig, tmp_path) as (client, _):
        # When the app exports them, in protobuf and again in JSON
        answers = [
            await export(client, "/v1/traces", traces_proto(recorder.spans()), PROTOBUF),
            await export(client, "/v1/traces", traces_json(recorder.spans()), JSON),
        ]
        # Then each encoding refuses the four alone, saying why; the rest count exactly
        for answer in answers:
            rejected, message = partial_success(answer, "/v1/traces")
            assert (rejected, "malformed x4" in message) == (4, True), message
        letters = await rig.every_dead_letter()
        details = {dict(r.headers)["rc.detail"].decode() for r in letters}
        assert {dict(r.headers)["rc.reason"] for r in letters} == {b"malformed"}
        for words in ("nan is not a whole", "inf is not a whole", "500.5 is not a whole"):
            assert any(words in detail for detail in details), (words, details)
        assert any("'500' is a string" in detail for detail in details), details
        await rig.settle()
        await rig.assert_exact(reference)


DOCS = Path(__file__).resolve().parents[3] / "docs" / "otel.md"


def docs_node_snippet(base: str) -> str:
    """The Node snippet of docs/otel.md as written: the controller at ``base``, a user's id
    named, and the SDK's batch flushed before exit (the provider's ``forceFlush`` resolves
    once the export is answered)."""
    section = DOCS.read_text().split("### Node", 1)[1]
    code = section.split("```javascript\n", 1)[1].split("```", 1)[0]
    assert code.count("http://controller:8000") == 1, code
    code = code.replace("http://controller:8000", base)
    flush = (
        'const { logs: published } = await import("@opentelemetry/api-logs");\n'
        "await published.getLoggerProvider().forceFlush();\n"
    )
    return f'const userId = "user-docs";\n{code}{flush}'


async def test_the_node_snippet_of_the_docs_as_written_is_counted(
    rig: Rig, tmp_path: Path, node: str
) -> None:
    # Given the docs' Node snippet, with the packages its install line pins (the tests' own)
    flag = "checkout.new-flow"
    await publish(rig, {flag: VERSION})
    app = tmp_path / "app"
    app.mkdir()
    (app / "node_modules").symlink_to(node_home() / "node_modules")
    async with serving(rig, tmp_path) as (client, _):
        base = str(client.base_url).rstrip("/")
        (app / "snippet.mjs").write_text(docs_node_snippet(base))
        # When it runs: one evaluation, exported by the SDK as its EventHook writes it
        env = {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": base,
            "OTEL_SERVICE_NAME": "docs",
        }
        ran = await asyncio.create_subprocess_exec(
            node, str(app / "snippet.mjs"), env=env, stderr=asyncio.subprocess.PIPE
        )
        _, errors = await asyncio.wait_for(ran.communicate(), 60)
        assert ran.returncode == 0, errors.decode()[-2000:]
        # Then the evaluation's log record reached the controller, and its exposure counts
        records = await metric(client, "rollout_otlp_http_items_total", signal="logs")
        assert records >= 1, "the snippet exported no log record"
        await rig.settle()
        assert await rig.counted({flag}) == 1


# --------------------------------------------------------------------------------------
# The broker away: 503, nothing counted, the export sent again counts once
# --------------------------------------------------------------------------------------


@pytest.fixture
async def gated(gate: Gate, redis_url: str, redis_namespace: str) -> Rig:  # noqa: F811
    bootstrap = f"127.0.0.1:{gate.port}"
    names = [f"otlp-{uuid.uuid4().hex[:8]}", f"otlp-dlq-{uuid.uuid4().hex[:8]}"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(name=n, num_partitions=p, replication_factor=1)
                for n, p in zip(names, (4, 1), strict=True)
            ]
        )
    finally:
        await admin.close()
    return Rig(bootstrap, redis_url, names[0], names[1], redis_namespace)


async def test_the_broker_away_is_a_503_and_the_export_sent_again_counts_once(
    gated: Rig,
    gate: Gate,  # noqa: F811
    tmp_path: Path,
) -> None:
    rig = gated
    await publish(rig, {FLAG: VERSION})
    recorder = Recorder()
    units = [f"user-{i}" for i in range(30)]
    spans = served(recorder, "treatment", units)
    reference = described(spans, dict.fromkeys(units, "treatment"))
    body = traces_proto(spans)
    async with serving(rig, tmp_path) as (client, _):
        gate.close()
        answer = await client.post("/v1/traces", content=body, headers=PROTOBUF)
        assert answer.status_code == 503, answer.content
        assert answer.headers["Retry-After"] == "2"
        assert answer.headers["Content-Type"] == "application/x-protobuf"
        gate.open()

        async def accepted() -> httpx.Response:
            again = await client.post("/v1/traces", content=body, headers=PROTOBUF)
            assert again.status_code == 200, again.status_code
            return again

        await eventually(accepted, timeout=60, what="the export accepted once the broker is back")
        await rig.settle()
        await rig.assert_exact(reference)
        assert await rig.counted({FLAG}) == len(reference)
