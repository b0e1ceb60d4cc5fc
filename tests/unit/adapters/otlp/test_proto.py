"""OTLP/protobuf: the SDK's exports read as their JSON twins are, hostile items refused alone."""

from __future__ import annotations

import time

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from controller.adapters.otlp import (
    decode_logs,
    decode_logs_proto,
    decode_traces,
    decode_traces_proto,
    logs_response,
    traces_response,
)
from controller.core.telemetry import (
    MAX_ANY_DEPTH,
    WHOLE_BODY,
    Bounds,
    Logs,
    Refusal,
    Spans,
    Translator,
    decode_logs_json,
    decode_traces_json,
    rules_of,
)
from controller.core.wire import ExposureIn, RequestIn
from tests.otlp_exports import (
    Recorder,
    evaluate,
    logs_json,
    logs_proto,
    openfeature_client,
    traces_json,
    traces_proto,
)

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
START = 1_800_000_000_000_000_000


def recorded() -> Recorder:
    app = Recorder({"service.name": "shop", "process.pid": 4242})
    client = openfeature_client({"checkout": "treatment", "search": "control"})
    with app.request(status=502):
        evaluate(client, "checkout", "u-1")
        with app.tracer.start_as_current_span("db") as work:
            evaluate(client, "search", "u-1")
            work.set_attribute("db.rows", 3)
            work.set_attribute("db.tags", ["a", "b"])
            app.logger.emit(
                event_name="feature_flag.evaluation",
                attributes={
                    "feature_flag.key": "checkout",
                    "feature_flag.result.variant": "control",
                },
            )
    app.logger.emit(attributes={"event.name": "checkout_completed", "value": 2.5})
    return app


def test_protobuf_and_json_exports_of_the_same_telemetry_decode_alike() -> None:
    app = recorded()
    spans = decode_traces_proto(traces_proto(app.spans()))
    logs = decode_logs_proto(logs_proto(app.records()))
    assert isinstance(spans, Spans)
    assert isinstance(logs, Logs)
    assert spans == decode_traces_json(traces_json(app.spans()))
    assert logs == decode_logs_json(logs_json(app.records()))
    assert (len(spans.spans), len(logs.records), spans.refused, logs.refused) == (2, 2, [], [])
    db = next(s for s in spans.spans if s.name == "db")
    assert db.attributes == {"db.rows": 3}  # the array is bounded, not kept
    assert db.resource["process.pid"] == 4242
    assert decode_traces(traces_proto(app.spans()), json=False) == spans
    assert decode_logs(logs_json(app.records()), json=True) == logs


def test_a_real_apps_evaluations_become_exposures_and_requests() -> None:
    app = recorded()
    spans = decode_traces_proto(traces_proto(app.spans()))
    assert isinstance(spans, Spans)
    known = {flag: rules_of(flag, None, 5) for flag in ("checkout", "search")}
    out = Translator(known.get).spans(spans, int(time.time() * 1000))  # recorded just now
    exposures = sorted((e.flag, e.unit, e.arm) for e in out.events if isinstance(e, ExposureIn))
    assert exposures == [("checkout", "u-1", "treatment"), ("search", "u-1", "control")]
    requests = [e for e in out.events if isinstance(e, RequestIn)]
    server = next(s for s in spans.spans if s.kind == 2)
    assert {(r.flag, r.error, r.ts) for r in requests} == {
        ("checkout", True, server.end_ns // 1_000_000),
        ("search", True, server.end_ns // 1_000_000),
    }


def any_of(depth: int) -> AnyValue:
    value = AnyValue(string_value="x")
    for _ in range(depth):
        nested = AnyValue()
        nested.kvlist_value.values.add(key="k").value.CopyFrom(value)
        value = nested
    return value


def proto_span(number: int, **fields: object) -> ProtoSpan:
    span = ProtoSpan(
        trace_id=TRACE,
        span_id=number.to_bytes(8, "big"),
        name="GET /",
        kind=ProtoSpan.SPAN_KIND_SERVER,
        start_time_unix_nano=START,
        end_time_unix_nano=START + 5_000_000,
    )
    for name, value in fields.items():
        if name == "attributes":
            span.attributes.extend(value)  # type: ignore[arg-type]
        elif name == "events":
            span.events.extend(value)  # type: ignore[arg-type]
        else:
            setattr(span, name, value)
    return span


def proto_export(*spans: ProtoSpan) -> bytes:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


HOSTILE = {
    "10k-attributes": (
        {"attributes": [KeyValue(key=f"a{i}", value=AnyValue(int_value=i)) for i in range(10_000)]},
        "oversize",
    ),
    "kvlist-too-deep": (
        {"attributes": [KeyValue(key="a", value=any_of(MAX_ANY_DEPTH + 1))]},
        "hostile_attribute",
    ),
    "huge-value": (
        {"attributes": [KeyValue(key="a", value=AnyValue(string_value="x" * 5000))]},
        "hostile_attribute",
    ),
    "huge-bytes": (
        {"attributes": [KeyValue(key="a", value=AnyValue(bytes_value=b"x" * 5000))]},
        "hostile_attribute",
    ),
    "huge-name": ({"name": "x" * 5000}, "oversize"),
    "200-events": ({"events": [ProtoSpan.Event(name="e")] * 200}, "oversize"),
    "trace-id-short": ({"trace_id": b"\x01" * 8}, "malformed"),
    "trace-id-zero": ({"trace_id": bytes(16)}, "malformed"),
    "span-id-missing": ({"span_id": b""}, "malformed"),
    "parent-id-long": ({"parent_span_id": b"\x01" * 16}, "malformed"),
}


@pytest.mark.parametrize(("fields", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_span_is_refused_with_a_reason_and_its_siblings_are_kept(
    fields: dict[str, object], reason: str
) -> None:
    found = decode_traces_proto(proto_export(proto_span(1), proto_span(2, **fields), proto_span(3)))
    assert isinstance(found, Spans)
    assert [s.span_id for s in found.spans] == [f"{1:016x}", f"{3:016x}"]
    [refusal] = found.refused
    assert (refusal.index, refusal.reason) == (1, reason)


def test_the_deepest_allowed_value_is_kept_apart_from_its_value() -> None:
    found = decode_traces_proto(
        proto_export(proto_span(1, attributes=[KeyValue(key="a", value=any_of(MAX_ANY_DEPTH))]))
    )
    assert isinstance(found, Spans)
    assert (found.spans[0].attributes, found.refused) == ({}, [])


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand (no message could hold it)."""
    size, varint = len(payload), b""
    while size > 0x7F:
        varint, size = varint + bytes([size & 0x7F | 0x80]), size >> 7
    return bytes([number << 3 | 2]) + varint + bytes([size]) + payload


def test_nesting_past_protobufs_own_limit_refuses_the_body() -> None:
    value = _field(1, b"x")
    for _ in range(40):  # AnyValue.kvlist_value > KeyValueList.values > KeyValue.value
        value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    span = proto_span(1).SerializeToString() + _field(9, _field(1, b"a") + _field(2, value))
    raw = _field(1, _field(2, _field(2, span)))
    found = decode_traces_proto(raw)
    assert isinstance(found, Refusal)
    assert (found.index, found.reason) == (WHOLE_BODY, "malformed")


@pytest.mark.parametrize(
    "raw", [b"\xff\xff\xff", b'{"resourceSpans": []}', b"\x0a\x05\x12\x03"], ids=str
)
def test_a_body_that_is_no_protobuf_export_is_refused_whole(raw: bytes) -> None:
    found = decode_traces_proto(raw)
    assert isinstance(found, Refusal)
    assert (found.index, found.reason) == (WHOLE_BODY, "malformed")
    logs = decode_logs_proto(raw)
    assert isinstance(logs, Refusal)
    assert (logs.index, logs.reason) == (WHOLE_BODY, "malformed")


def test_an_empty_body_is_an_empty_export_and_too_many_items_are_refused_whole() -> None:
    assert decode_traces_proto(b"") == Spans([], [])
    many = proto_export(*[proto_span(i + 1) for i in range(4)])
    assert decode_traces_proto(many, Bounds(max_items=3)) == Refusal(
        WHOLE_BODY, "oversize", "4 items > 3"
    )


def test_a_hostile_log_record_is_refused_alone() -> None:
    app = Recorder()
    app.logger.emit(event_name="ok")
    app.logger.emit(event_name="x" * 5000)
    app.logger.emit(attributes={"event.name": "named"})
    found = decode_logs_proto(logs_proto(app.records()))
    assert isinstance(found, Logs)
    assert [r.event_name for r in found.records] == ["ok", "named"]
    assert [(r.index, r.reason) for r in found.refused] == [(1, "oversize")]


@pytest.mark.parametrize(("rejected", "message"), [(3, "3 spans refused: unknown_flag"), (0, "")])
def test_the_traces_answer_is_a_partial_success_in_either_encoding(
    rejected: int, message: str
) -> None:
    answer = ExportTraceServiceResponse.FromString(traces_response(rejected, message, json=False))
    assert answer.HasField("partial_success") is bool(rejected)
    assert (answer.partial_success.rejected_spans, answer.partial_success.error_message) == (
        rejected,
        message,
    )
    as_json = orjson.loads(traces_response(rejected, message, json=True))
    if rejected:
        assert as_json == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": message}}
    else:
        assert as_json == {}


def test_the_logs_answer_names_rejected_log_records() -> None:
    answer = ExportLogsServiceResponse.FromString(logs_response(2, "x" * 600, json=False))
    assert answer.partial_success.rejected_log_records == 2
    assert len(answer.partial_success.error_message) == 500
    assert orjson.loads(logs_response(2, "bad", json=True)) == {
        "partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "bad"}
    }
    assert logs_response(0, "", json=False) == b""
