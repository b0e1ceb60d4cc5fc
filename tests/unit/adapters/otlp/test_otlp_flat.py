"""The fast protobuf path answers what the OTLP schema's own decoder answers, export by export.

:func:`decode_traces_flat` (natively where the extension is installed) and
:func:`decode_traces_projected` read an export's attributes all at once; whatever they do
not read exactly as :func:`decode_traces_proto` does goes to it. Each case here is an
export an SDK writes, or one changed in one way; both decoders must give equal spans
and equal refusals.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from controller.adapters.otlp import decode_traces_proto
from controller.adapters.otlp.flat import _fast, decode_traces_flat, decode_traces_projected
from controller.core.telemetry import DEFAULT_BOUNDS, Bounds, Spans
from tests.support.otel.otlp_exports import Recorder
from tests.support.otel.otlp_kafka import evaluated_requests, hooked_requests
from tests.support.otel.otlp_records import field, span_exports

Change = Callable[[ProtoSpan], None]


def sdk_export(*, arrays: bool = True) -> ExportTraceServiceRequest:
    """Requests evaluated both ways, and a child span of every scalar type (and an array)."""
    recorder = Recorder({"service.name": "shop", "service.instance.id": 7, "cloud": True})
    evaluated_requests(recorder, 12, flags=["a", "b"], version=2, seed=3)
    hooked_requests(recorder, 3, flag="a", variant="control", seed=4)
    with recorder.tracer.start_as_current_span("child") as span:
        span.set_attribute("ratio", 0.25)
        span.set_attribute("ok", False)
        if arrays:
            span.set_attribute("retries", [1, 2])
    return encode_spans(recorder.spans())


def _set(key: str, value: AnyValue) -> Change:
    def change(span: ProtoSpan) -> None:
        span.attributes.add(key=key, value=value)

    return change


def _repeated(span: ProtoSpan) -> None:
    for i in range(2):
        span.attributes.add(key="r", value=AnyValue(int_value=i))


def _deep(depth: int) -> AnyValue:
    value = AnyValue(string_value="bottom")
    for _ in range(depth):
        value = AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=value)]))
    return value


def _many(count: int) -> Change:
    def change(span: ProtoSpan) -> None:
        for i in range(count):
            span.attributes.add(key=f"k{i}", value=AnyValue(int_value=i))

    return change


def _event_key(key: str) -> Change:
    def change(span: ProtoSpan) -> None:
        event = span.events.add(name="feature_flag.evaluation")
        event.attributes.add(key=key, value=AnyValue(string_value="x"))

    return change


def _events(count: int) -> Change:
    def change(span: ProtoSpan) -> None:
        for _ in range(count):
            span.events.add(name="e")

    return change


CHANGES: dict[str, Change] = {
    "as written": lambda _span: None,
    "a double": _set("d", AnyValue(double_value=1.5)),
    "a bool": _set("b", AnyValue(bool_value=True)),
    "an empty string": _set("s", AnyValue(string_value="")),
    "an array": _set("a", AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))),
    "a key-value list": _set("l", _deep(2)),
    "nested too deep": _set("l", _deep(12)),
    "bytes": _set("y", AnyValue(bytes_value=b"\x00\x01")),
    "an empty value": _set("e", AnyValue()),
    "a key too long": _set("k" * 300, AnyValue(string_value="v")),
    "a value too long": _set("v", AnyValue(string_value="v" * 5000)),
    "too many attributes": _many(200),
    "a repeated key": _repeated,
    "too many events": _events(200),
    "an event key too long": _event_key("e" * 300),
    "a name too long": lambda span: setattr(span, "name", "n" * 5000),
    "a short trace id": lambda span: setattr(span, "trace_id", b"\x01" * 8),
    "a zero span id": lambda span: setattr(span, "span_id", bytes(8)),
    "a zero parent": lambda span: setattr(span, "parent_span_id", bytes(8)),
    "a long parent": lambda span: setattr(span, "parent_span_id", b"\x01" * 9),
    "no trace id": lambda span: span.ClearField("trace_id"),
    "an error status": lambda span: setattr(span.status, "code", 2),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
@pytest.mark.parametrize("where", [0, 5, -1])
def test_one_span_changed_reads_the_same_both_ways(change: str, where: int) -> None:
    export = sdk_export()
    CHANGES[change](export.resource_spans[0].scope_spans[0].spans[where])
    raw = export.SerializeToString()
    expected = decode_traces_proto(raw)
    assert decode_traces_flat(raw) == expected
    assert decode_traces_projected(raw) == expected


def test_the_fast_path_reads_sdk_exports_and_the_benchmarks_records_itself() -> None:
    for raw in (
        sdk_export(arrays=False).SerializeToString(),
        *span_exports(300, 100, ["a", "b", "c"], units=40),
    ):
        fast = _fast(raw, DEFAULT_BOUNDS)
        assert isinstance(fast, Spans)
        assert fast == decode_traces_proto(raw)


_IDS = field(1, b"\x01" * 16) + field(2, b"\x02" * 8)
TWO_FIELDS = field(
    1,
    field(2, field(2, _IDS + field(9, field(1, b"x") + field(2, field(1, b"s") + field(6, b""))))),
)
"""A span whose attribute's AnyValue holds a string, then a key-value list: the last counts."""


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not an export",
        b"\x0a\x03\xff\xfe\xfd",  # a resource_spans field that is no message
        TWO_FIELDS,
    ],
)
def test_odd_bodies_read_the_same_both_ways(raw: bytes) -> None:
    assert decode_traces_flat(raw) == decode_traces_proto(raw)
    assert decode_traces_projected(raw) == decode_traces_proto(raw)


def test_bounds_apply_the_same_both_ways() -> None:
    raw = sdk_export().SerializeToString()
    for bounds in (Bounds(max_items=3), Bounds(max_attributes=2), Bounds(max_value_chars=4)):
        expected = decode_traces_proto(raw, bounds)
        assert decode_traces_flat(raw, bounds) == expected
        assert decode_traces_projected(raw, bounds) == expected
