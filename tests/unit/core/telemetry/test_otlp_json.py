"""OTLP/JSON: what the SDK's encoders write is read, and each hostile item is refused alone."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from controller.core.telemetry import (
    DEFAULT_BOUNDS,
    WHOLE_BODY,
    Bounds,
    Logs,
    Refusal,
    Spans,
    decode_logs_json,
    decode_traces_json,
)
from controller.core.telemetry.otlp_json import MAX_BODY_NESTING
from tests.support.otel.otlp_exports import Recorder, logs_json, traces_json
from tests.unit.core.telemetry.builders import CHILD, ROOT, TRACE

START = "1800000000000000000"


def attribute(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def kvlist(depth: int) -> dict[str, Any]:
    """An AnyValue of key-value lists ``depth`` levels deep around a string."""
    value: dict[str, Any] = {"stringValue": "x"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [attribute("k", value)]}}
    return value


def json_span(span_id: str = ROOT, **fields: Any) -> dict[str, Any]:
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "name": "GET /checkout",
        "kind": 2,
        "startTimeUnixNano": START,
        "endTimeUnixNano": "1800000000025000000",
        "attributes": [attribute("http.response.status_code", {"intValue": "200"})],
        **fields,
    }


def export(*spans: dict[str, Any], resource: list[Any] | None = None) -> bytes:
    group = {"resource": {"attributes": resource or []}, "scopeSpans": [{"spans": list(spans)}]}
    return orjson.dumps({"resourceSpans": [group]})


def decoded(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Spans:
    found = decode_traces_json(raw, bounds)
    assert isinstance(found, Spans), found
    return found


def test_the_sdks_export_is_read_field_for_field() -> None:
    app = Recorder({"service.name": "shop", "deployment.environment": "prod"})
    with app.request(status=503), app.tracer.start_as_current_span("db") as work:
        work.set_attribute("db.rows", 3)
        work.add_event("cache.miss", {"cache.key": "cart:9", "cache.hit": False})
    raw = traces_json(app.spans())
    keys = set(re.findall(rb'"([A-Za-z_]+)":', raw))
    assert {b"resourceSpans", b"scopeSpans", b"traceId", b"spanId", b"startTimeUnixNano"} <= keys
    assert not [key for key in keys if b"_" in key]  # lowerCamelCase throughout
    assert re.search(rb'"traceId":"[0-9a-f]{32}"', raw)
    assert re.search(rb'"startTimeUnixNano":"[0-9]+"', raw)  # int64 as a string
    found = decoded(raw)
    assert found.refused == []
    by_name = {s.name: s for s in found.spans}
    for recorded in app.spans():
        span = by_name[recorded.name]
        assert recorded.context is not None
        assert span.trace_id == format(recorded.context.trace_id, "032x")
        assert span.span_id == format(recorded.context.span_id, "016x")
        assert (span.start_ns, span.end_ns) == (recorded.start_time, recorded.end_time)
        assert span.attributes == dict(recorded.attributes or {})
        assert span.resource["deployment.environment"] == "prod"
    db, server = by_name["db"], by_name["GET /checkout"]
    assert (server.kind, server.parent_span_id, db.kind, db.parent_span_id) == (
        2,
        "",
        1,
        server.span_id,
    )
    assert db.events[0].name == "cache.miss"
    assert db.events[0].attributes == {"cache.key": "cart:9", "cache.hit": False}


def test_enum_names_snake_case_and_int64_numbers_are_read_too() -> None:
    app = Recorder()
    with app.request():
        pass
    by_names = decoded(traces_json(app.spans(), enum_names=True))
    assert by_names.spans[0].kind == 2
    snake = orjson.dumps(
        {
            "resource_spans": [
                {
                    "scope_spans": [
                        {
                            "spans": [
                                {
                                    "trace_id": TRACE,
                                    "span_id": ROOT,
                                    "parent_span_id": CHILD,
                                    "name": "GET /",
                                    "kind": "SPAN_KIND_SERVER",
                                    "start_time_unix_nano": 1_800_000_000_000_000_000,
                                    "end_time_unix_nano": 1_800_000_000_005_000_000,
                                    "status": {"code": "STATUS_CODE_ERROR"},
                                    "attributes": [attribute("n", {"int_value": 5})],
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    )
    [span] = decoded(snake).spans
    assert (span.parent_span_id, span.kind, span.status_code) == (CHILD, 2, 2)
    assert (span.start_ns, span.end_ns, span.attributes) == (
        1_800_000_000_000_000_000,
        1_800_000_000_005_000_000,
        {"n": 5},
    )


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ({"stringValue": "v"}, "v"),
        ({"boolValue": True}, True),
        ({"intValue": "-9223372036854775808"}, -(2**63)),
        ({"intValue": 42}, 42),
        ({"doubleValue": 2.5}, 2.5),
        ({"doubleValue": "2.5"}, 2.5),
        ({"doubleValue": 3}, 3.0),
        ({"arrayValue": {"values": [{"stringValue": "a"}]}}, None),
        ({"kvlistValue": {"values": [attribute("k", {"intValue": 1})]}}, None),
        ({"bytesValue": "AAEC"}, None),
        ({}, None),
    ],
)
def test_each_kind_of_any_value(value: dict[str, Any], kept: object) -> None:
    [span] = decoded(export(json_span(attributes=[attribute("a", value)]))).spans
    assert span.attributes.get("a") == kept


HUGE = "x" * 5000
HOSTILE = {
    "10k-attributes": (
        {"attributes": [attribute(f"a{i}", {"intValue": i}) for i in range(10_000)]},
        "oversize",
    ),
    "huge-name": ({"name": HUGE}, "oversize"),
    "200-events": ({"events": [{"name": "e"}] * 200}, "oversize"),
    "name-a-number": ({"name": 5}, "malformed"),
    "kind-unknown": ({"kind": "SPAN_KIND_BOGUS"}, "malformed"),
    "attributes-a-string": ({"attributes": "x"}, "malformed"),
    "string-value-a-number": ({"attributes": [attribute("a", {"stringValue": 5})]}, "malformed"),
    "int-value-text": ({"attributes": [attribute("a", {"intValue": "12abc"})]}, "malformed"),
    "int-value-past-int64": (
        {"attributes": [attribute("a", {"intValue": "9223372036854775808"})]},
        "malformed",
    ),
    "value-of-two-kinds": (
        {"attributes": [attribute("a", {"stringValue": "a", "intValue": 1})]},
        "malformed",
    ),
    "value-of-unknown-kind": ({"attributes": [attribute("a", {"fooValue": 1})]}, "malformed"),
    "value-a-list": ({"attributes": [attribute("a", [1])]}, "malformed"),
    "trace-id-not-hex": ({"traceId": "z" * 32}, "malformed"),
    "trace-id-base64": ({"traceId": "CvdlGRbNQ92ESOshHIAxnA=="}, "malformed"),
    "span-id-missing": ({"spanId": ""}, "malformed"),
    "parent-id-short": ({"parentSpanId": "abc"}, "malformed"),
    "time-negative": ({"startTimeUnixNano": "-5"}, "malformed"),
    "time-past-int64": ({"endTimeUnixNano": "9223372036854775808"}, "malformed"),
    "time-a-fraction": ({"endTimeUnixNano": "1.5"}, "malformed"),
    "status-unknown": ({"status": {"code": "BROKEN"}}, "malformed"),
}


@pytest.mark.parametrize(("fields", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_span_is_refused_with_a_reason_and_its_siblings_are_kept(
    fields: dict[str, Any], reason: str
) -> None:
    raw = export(json_span("1111111111111111"), json_span(**fields), json_span(CHILD))
    found = decoded(raw)
    assert [s.span_id for s in found.spans] == ["1111111111111111", CHILD]
    [refusal] = found.refused
    assert (refusal.index, refusal.reason) == (1, reason)
    assert 0 < len(refusal.detail) <= 200


UNREAD = {
    "kvlist-9-deep": (attribute("a", kvlist(9)), {}),
    "kvlist-60-deep": (attribute("a", kvlist(60)), {}),
    "array-of-10k": (attribute("a", {"arrayValue": {"values": [{"intValue": 1}] * 10_000}}), {}),
    "huge-value-cut": (attribute("a", {"stringValue": HUGE}), {"a": HUGE[:4096]}),
    "huge-key-dropped": (attribute(HUGE, {"intValue": 1}), {}),
}


@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow"])
@pytest.mark.parametrize(("pair", "kept"), UNREAD.values(), ids=UNREAD.keys())
def test_what_is_not_read_costs_its_span_nothing_on_either_path(
    pair: dict[str, Any], kept: dict[str, object], slow: bool
) -> None:
    status = attribute("http.response.status_code", {"intValue": "500"})
    span = json_span(CHILD, attributes=[status, pair])
    # A malformed sibling sends the export to the slow path, an item at a time.
    siblings = [json_span(name=5)] if slow else []
    found = decoded(export(span, *siblings))
    [read] = found.spans
    assert read.attributes == {"http.response.status_code": 500, **kept}
    assert [r.index for r in found.refused] == ([1] if slow else [])


def test_a_body_past_msgspecs_recursion_guard_is_refused_whole() -> None:
    value = b'{"stringValue":"x"}'
    for _ in range(2000):  # deeper than orjson writes: by hand
        value = b'{"kvlistValue":{"values":[{"key":"k","value":' + value + b"}]}}"
    marker = json_span(attributes=[attribute("a", {"stringValue": "MARK"})])
    raw = export(json_span(CHILD), marker).replace(b'{"stringValue":"MARK"}', value)
    found = decode_traces_json(raw)
    assert found == Refusal(
        WHOLE_BODY, "malformed", f"nested deeper than {MAX_BODY_NESTING} levels"
    )


def test_a_repeated_attribute_keeps_its_last_value() -> None:
    pairs = [attribute("a", {"stringValue": "first"}), attribute("a", {"intValue": 2})]
    [span] = decoded(export(json_span(attributes=pairs))).spans
    assert span.attributes == {"a": 2}


def test_a_hostile_resource_refuses_each_of_its_spans() -> None:
    bad = {
        "resource": {"attributes": [attribute(f"a{i}", {"intValue": i}) for i in range(200)]},
        "scopeSpans": [{"spans": [json_span(), json_span(CHILD)]}],
    }
    good = {"scopeSpans": [{"spans": [json_span("2222222222222222")]}]}
    found = decoded(orjson.dumps({"resourceSpans": [bad, good]}))
    assert [s.span_id for s in found.spans] == ["2222222222222222"]
    assert [(r.index, r.reason) for r in found.refused] == [(0, "oversize"), (1, "oversize")]
    assert found.refused[0].detail == "resource: 200 attributes > 128"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'"a string"', "malformed"),
        (b'{"resourceSpans": 5}', "malformed"),
        (b"{" * 300 + b"}" * 300, "malformed"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [' + b"[" * 200, "malformed"),
        (export(*[json_span()] * 6), "oversize"),
    ],
    ids=["not-json", "a-list", "a-string", "wrong-shape", "too-deep", "deep-unclosed", "items"],
)
def test_a_body_that_is_no_export_is_refused_whole(raw: bytes, reason: str) -> None:
    found = decode_traces_json(raw, Bounds(max_items=5))
    assert isinstance(found, Refusal)
    assert (found.index, found.reason) == (WHOLE_BODY, reason)


BAD_TEXT = {
    "lone-surrogate-in-a-name": (b'"name":"MARK"', b'"name":"\\ud800"'),
    "lone-low-surrogate-in-a-value": (b'"MARK"', b'"\\udfff"'),
    "surrogate-pair-cut-short": (b'"MARK"', b'"\\ud83d x"'),
    "bytes-not-utf-8": (b'"MARK"', b'"\xff\xfe"'),
}


@pytest.mark.parametrize(("mark", "bad"), BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_text_that_is_not_utf_8_refuses_only_its_span(mark: bytes, bad: bytes) -> None:
    marked = json_span(
        "3333333333333333", name="MARK", attributes=[attribute("a", {"stringValue": "MARK"})]
    )
    raw = export(json_span(), marked, json_span(CHILD)).replace(mark, bad, 1)
    found = decoded(raw)
    assert [s.span_id for s in found.spans] == [ROOT, CHILD]
    assert [(r.index, r.reason) for r in found.refused] == [(1, "malformed")]
    assert "not UTF-8" in found.refused[0].detail


def test_text_that_is_not_utf_8_in_a_resource_refuses_its_spans_alone() -> None:
    bad = {
        "resource": {"attributes": [attribute("service.name", {"stringValue": "MARK"})]},
        "scopeSpans": [{"spans": [json_span(), json_span(CHILD)]}],
    }
    good = {"scopeSpans": [{"spans": [json_span("2222222222222222")]}]}
    raw = orjson.dumps({"resourceSpans": [bad, good]}).replace(b'"MARK"', b'"\\ud800"')
    found = decoded(raw)
    assert [s.span_id for s in found.spans] == ["2222222222222222"]
    assert [(r.index, r.reason) for r in found.refused] == [(0, "malformed"), (1, "malformed")]


def test_a_lone_surrogate_refuses_only_its_log_record() -> None:
    good = {"timeUnixNano": START, "eventName": "e"}
    records = [good, {**good, "eventName": "MARK"}, good]
    body = orjson.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]})
    found = decode_logs_json(body.replace(b'"MARK"', b'"\\ud800"'))
    assert isinstance(found, Logs)
    assert [r.event_name for r in found.records] == ["e", "e"]
    assert [(r.index, r.reason) for r in found.refused] == [(1, "malformed")]


def test_an_empty_export_has_nothing_in_it() -> None:
    assert decoded(b"{}") == Spans([], [])
    assert decoded(b'{"resourceSpans": []}') == Spans([], [])


def test_the_sdks_log_records_are_read() -> None:
    app = Recorder()
    with app.request():
        app.logger.emit(event_name="feature_flag.evaluation", attributes={"feature_flag.key": "f"})
    app.logger.emit(attributes={"event.name": "checkout_completed", "value": 9.5})
    app.logger.emit(body="plain text")
    found = decode_logs_json(logs_json(app.records()))
    assert isinstance(found, Logs)
    assert found.refused == []
    inside, named, plain = found.records
    [server] = app.spans()
    assert server.context is not None
    assert inside.trace_id == format(server.context.trace_id, "032x")
    assert inside.span_id == format(server.context.span_id, "016x")
    assert (inside.event_name, inside.attributes) == (
        "feature_flag.evaluation",
        {"feature_flag.key": "f"},
    )
    assert (named.trace_id, named.span_id, named.event_name) == ("", "", "checkout_completed")
    assert plain.event_name == ""
    assert all(r.time_ns > 0 for r in found.records)  # observed time when no time was set


def test_a_hostile_log_record_is_refused_alone() -> None:
    good = {"timeUnixNano": START, "eventName": "e"}
    body = orjson.dumps(
        {
            "resourceLogs": [
                {
                    "scopeLogs": [
                        {
                            "logRecords": [
                                good,
                                {**good, "traceId": "nothex"},
                                {**good, "attributes": [attribute("a", kvlist(9))]},
                                {
                                    **good,
                                    "attributes": [attribute(f"a{i}", {}) for i in range(200)],
                                },
                                {**good, "body": kvlist(40)},  # never read
                                {"observed_time_unix_nano": START, "event_name": "snake"},
                            ]
                        }
                    ]
                }
            ]
        }
    )
    found = decode_logs_json(body)
    assert isinstance(found, Logs)
    assert [(r.event_name, r.time_ns) for r in found.records] == [
        ("e", int(START)),
        ("e", int(START)),
        ("e", int(START)),
        ("snake", int(START)),
    ]
    assert [(r.index, r.reason) for r in found.refused] == [(1, "malformed"), (3, "oversize")]
