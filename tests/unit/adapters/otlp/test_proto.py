"""OTLP/protobuf: the SDK's exports read as their JSON twins are, hostile items refused alone."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest
from google.protobuf.message import DecodeError
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
    decode_traces_flat,
    decode_traces_proto,
    logs_response,
    traces_response,
)
from controller.core.telemetry import (
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
from tests.support.otel.otlp_exports import (
    Recorder,
    evaluate,
    logs_json,
    logs_proto,
    openfeature_client,
    traces_json,
    traces_proto,
)

Decode = Callable[[bytes], Spans | Refusal]
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
    assert db.attributes == {"db.rows": 3}  # the array is not read, so not kept
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


UNREAD = {
    "kvlist-9-deep": (any_of(9), {}),
    "kvlist-25-deep": (any_of(25), {}),
    "huge-bytes": (AnyValue(bytes_value=b"x" * 5000), {}),
    "huge-value-cut": (AnyValue(string_value="x" * 5000), {"a": "x" * 4096}),
    "64k-value-cut": (AnyValue(string_value="y" * 65_536), {"a": "y" * 4096}),
}


@pytest.mark.parametrize("decode", [decode_traces_proto, decode_traces_flat], ids=["proto", "flat"])
@pytest.mark.parametrize(("value", "kept"), UNREAD.values(), ids=UNREAD.keys())
def test_what_is_not_read_costs_its_span_nothing(
    value: AnyValue, kept: dict[str, object], decode: Decode
) -> None:
    status = KeyValue(key="http.response.status_code", value=AnyValue(int_value=500))
    long_key = KeyValue(key="k" * 300, value=AnyValue(int_value=1))
    pairs = [status, KeyValue(key="a", value=value), long_key]
    found = decode(proto_export(proto_span(1, attributes=pairs), proto_span(2)))
    assert isinstance(found, Spans)
    assert found.refused == []
    assert found.spans[0].attributes == {"http.response.status_code": 500, **kept}


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, written by hand (no message could hold it)."""
    size, varint = len(payload), b""
    while size > 0x7F:
        varint, size = varint + bytes([size & 0x7F | 0x80]), size >> 7
    return bytes([number << 3 | 2]) + varint + bytes([size]) + payload


def too_deep(levels: int) -> bytes:
    """A span with an attribute ``levels`` key-value lists deep, past protobuf's recursion
    limit (100 messages) once past about 32."""
    value = _field(1, b"x")
    for _ in range(levels):  # AnyValue.kvlist_value > KeyValueList.values > KeyValue.value
        value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    return proto_span(2).SerializeToString() + _field(9, _field(1, b"a") + _field(2, value))


def marked(**fields: object) -> bytes:
    """A span holding the text MARK where ``fields`` say, to be replaced by bad bytes."""
    return proto_span(2, **fields).SerializeToString()


def with_span(*middle: bytes) -> bytes:
    """An export of a good span, the spans given as bytes, and another good span."""
    spans = [proto_span(1).SerializeToString(), *middle, proto_span(3).SerializeToString()]
    return _field(1, _field(2, b"".join(_field(2, span) for span in spans)))


UNPARSABLE = {
    "name-not-utf-8": with_span(marked(name="MARK")).replace(b"MARK", b"\xff\xfeRK"),
    "value-not-utf-8": with_span(
        marked(attributes=[KeyValue(key="a", value=AnyValue(string_value="MARK"))])
    ).replace(b"MARK", b"MA\xc3("),
    "event-name-not-utf-8": with_span(marked(events=[ProtoSpan.Event(name="MARK")])).replace(
        b"MARK",
        b"\xed\xa0\x80K",  # a surrogate, as UTF-8 may not encode one
    ),
    "past-protobufs-limit": with_span(too_deep(40)),
    "far-past-it": with_span(too_deep(5000)),
}


@pytest.mark.parametrize("decode", [decode_traces_proto, decode_traces_flat], ids=["proto", "flat"])
@pytest.mark.parametrize("raw", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_a_span_protobuf_does_not_parse_is_refused_alone(raw: bytes, decode: Decode) -> None:
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest.FromString(raw)  # the whole export, as parsed before
    found = decode(raw)
    assert isinstance(found, Spans), found
    assert [s.span_id for s in found.spans] == [f"{1:016x}", f"{3:016x}"]
    [refusal] = found.refused
    assert (refusal.index, refusal.reason) == (1, "malformed")
    assert refusal.detail.startswith("not an OTLP span: ")


def test_a_resource_protobuf_does_not_parse_refuses_its_spans_alone() -> None:
    bad_resource = _field(1, _field(1, _field(1, b"service.name") + _field(2, _field(1, b"\xff"))))
    spans = _field(2, b"".join(_field(2, proto_span(i).SerializeToString()) for i in (1, 2)))
    good = _field(2, _field(2, proto_span(3).SerializeToString()))
    found = decode_traces_proto(_field(1, bad_resource + spans) + _field(1, good))
    assert isinstance(found, Spans), found
    assert [s.span_id for s in found.spans] == [f"{3:016x}"]
    assert [(r.index, r.reason) for r in found.refused] == [(0, "malformed"), (1, "malformed")]
    assert found.refused[0].detail.startswith("resource: not an OTLP resource")


def test_a_log_record_protobuf_does_not_parse_is_refused_alone() -> None:
    app = Recorder()
    for name in ("ok", "MARK", "named"):
        app.logger.emit(event_name=name)
    raw = logs_proto(app.records()).replace(b"MARK", b"\xff\xffRK")
    found = decode_logs_proto(raw)
    assert isinstance(found, Logs), found
    assert [r.event_name for r in found.records] == ["ok", "named"]
    assert [(r.index, r.reason) for r in found.refused] == [(1, "malformed")]


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
