"""The benchmark's fast-made Collector records are the exports protobuf's own classes read."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from controller.adapters.otlp import decode_traces_proto
from controller.core.telemetry import Spans
from tests.support.otel.otlp_records import T0_NS, span_exports


def test_the_records_hold_distinct_server_spans_each_with_one_evaluation() -> None:
    records = span_exports(250, 100, ["a", "b"], units=50, version=3)
    assert len(records) == 3
    parsed = [ExportTraceServiceRequest.FromString(r) for r in records]
    spans = [s for p in parsed for s in p.resource_spans[0].scope_spans[0].spans]
    assert len(spans) == 250
    assert len({s.trace_id for s in spans}) == len({s.span_id for s in spans}) == 250
    first = spans[0]
    assert (first.kind, first.start_time_unix_nano) == (2, T0_NS)
    assert first.end_time_unix_nano > first.start_time_unix_nano
    event = first.events[0]
    assert event.name == "feature_flag.evaluation"
    assert event.time_unix_nano == first.start_time_unix_nano
    attributes = {kv.key: kv.value for kv in event.attributes}
    assert attributes["feature_flag.key"].string_value == "a"
    assert attributes["feature_flag.version"].string_value == "3"
    assert attributes["feature_flag.context.id"].string_value.startswith("u")
    errors = [s for s in spans if s.status.code == 2]
    assert all(
        {kv.key: kv.value.int_value for kv in s.attributes}["http.response.status_code"] == 500
        for s in errors
    )
    decoded = [decode_traces_proto(r) for r in records]
    assert [len(d.spans) if isinstance(d, Spans) else d for d in decoded] == [100, 100, 50]
