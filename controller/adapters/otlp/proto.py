"""OTLP/protobuf export requests into the neutral spans and logs, and the partial-success answers.

Parsed with ``opentelemetry-proto``'s generated classes (the OTLP wire
format's own), then read into :mod:`controller.core.telemetry`'s types with
the same bounds and the same per-item refusals as OTLP/JSON: both decoders
hand their scalar attributes to ``kept_attributes`` (any other value is
dropped unread) and their resources and items to ``items_of``. An export
protobuf refuses whole (a string that is not UTF-8, a value nested past its
recursion limit) is read again item by item (:mod:`.envelope`), so only the
item that does not parse is refused (``malformed``); a body that is not an
export at all is refused whole (``WHOLE_BODY``, ``malformed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord as ProtoLogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from controller.adapters.otlp.envelope import groups_of
from controller.core.telemetry import (
    DEFAULT_BOUNDS,
    EVENT_NAME_ATTRIBUTE,
    NO_ATTRIBUTES,
    WHOLE_BODY,
    Attributes,
    Bounds,
    LogRecord,
    Logs,
    Refusal,
    Refused,
    Span,
    SpanEvent,
    Spans,
    bounded_text,
    check_count,
    check_events,
    decode_logs_json,
    decode_traces_json,
    items_of,
    kept_attributes,
    span_id_from,
    trace_id_from,
)

if TYPE_CHECKING:
    from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

MAX_MESSAGE_CHARS: Final = 500
"""The longest ``errorMessage`` a partial-success answer carries."""
_SCALARS: Final = frozenset({"string_value", "bool_value", "int_value", "double_value"})
T = TypeVar("T")
M = TypeVar("M", bound=Message)


def decode_traces_proto(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Spans | Refusal:
    """The spans of a protobuf ``ExportTraceServiceRequest``, or why the body is refused."""
    try:
        request = ExportTraceServiceRequest.FromString(raw)
    except (DecodeError, ValueError, RuntimeError) as exc:
        found = _item_by_item(raw, bounds, exc, _parsed(ProtoSpan, "span", _span_of))
        return found if isinstance(found, Refusal) else Spans(*found)
    groups = [
        (group.resource, [span for scope in group.scope_spans for span in scope.spans])
        for group in request.resource_spans
    ]
    found = items_of(groups, bounds, _resource_of, _span_of)
    return found if isinstance(found, Refusal) else Spans(*found)


def decode_logs_proto(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Logs | Refusal:
    """The log records of a protobuf ``ExportLogsServiceRequest``, or why the body is refused."""
    try:
        request = ExportLogsServiceRequest.FromString(raw)
    except (DecodeError, ValueError, RuntimeError) as exc:
        found = _item_by_item(raw, bounds, exc, _parsed(ProtoLogRecord, "log record", _record_of))
        return found if isinstance(found, Refusal) else Logs(*found)
    groups = [
        (group.resource, [record for scope in group.scope_logs for record in scope.log_records])
        for group in request.resource_logs
    ]
    found = items_of(groups, bounds, _resource_of, _record_of)
    return found if isinstance(found, Refusal) else Logs(*found)


def decode_traces(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS, *, json: bool) -> Spans | Refusal:
    """The spans of an export in either encoding (OTLP/JSON when ``json``)."""
    return decode_traces_json(raw, bounds) if json else decode_traces_proto(raw, bounds)


def decode_logs(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS, *, json: bool) -> Logs | Refusal:
    """The log records of an export in either encoding (OTLP/JSON when ``json``)."""
    return decode_logs_json(raw, bounds) if json else decode_logs_proto(raw, bounds)


def _item_by_item(
    raw: bytes,
    bounds: Bounds,
    failure: Exception,
    item_of: Callable[[bytes, Attributes, Bounds], T],
) -> tuple[list[T], list[Refusal]] | Refusal:
    """An export protobuf refused whole, read again a resource and an item at a time
    (:mod:`.envelope`): what does not parse is refused alone, its siblings read."""
    groups = groups_of(raw)
    if groups is None:
        return Refusal(WHOLE_BODY, "malformed", f"not an OTLP/protobuf export: {failure}"[:200])
    return items_of(groups, bounds, _parsed_resource, item_of)


def _parsed(
    kind: type[M], what: str, item_of: Callable[[M, Attributes, Bounds], T]
) -> Callable[[bytes, Attributes, Bounds], T]:
    """``item_of`` for an item still in bytes: parsed on its own first."""

    def read(raw: bytes, resource: Attributes, bounds: Bounds) -> T:
        return item_of(_parse(kind, raw, what), resource, bounds)

    return read


def _parsed_resource(raw: bytes, bounds: Bounds) -> Attributes:
    return _resource_of(_parse(Resource, raw, "resource"), bounds)


def _parse(kind: type[M], raw: bytes, what: str) -> M:
    try:
        return kind.FromString(raw)
    except (DecodeError, ValueError, RuntimeError) as exc:
        # upb names the message, then the cause ("String field had bad UTF-8").
        cause = str(exc).rpartition(": ")[2] or type(exc).__name__
        raise Refused("malformed", f"not an OTLP {what}: {cause}") from None


def _resource_of(resource: Resource, bounds: Bounds) -> Attributes:
    return _attributes(resource.attributes, bounds)


def _span_of(span: ProtoSpan, resource: Attributes, bounds: Bounds) -> Span:
    events = span.events
    if events:
        check_events(len(events), bounds)
    return Span(
        trace_id=trace_id_from(span.trace_id, required=True),
        span_id=span_id_from(span.span_id, required=True),
        parent_span_id=span_id_from(span.parent_span_id, required=False),
        name=bounded_text(span.name, "name", bounds),
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_code=span.status.code,
        attributes=_attributes(span.attributes, bounds),
        events=tuple(
            SpanEvent(
                name=bounded_text(event.name, "event name", bounds),
                time_ns=event.time_unix_nano,
                attributes=_attributes(event.attributes, bounds),
            )
            for event in events
        )
        if events
        else (),
        resource=resource,
    )


def _record_of(record: ProtoLogRecord, resource: Attributes, bounds: Bounds) -> LogRecord:
    attributes = _attributes(record.attributes, bounds)
    name = record.event_name
    if not name:
        named = attributes.get(EVENT_NAME_ATTRIBUTE)
        name = named if type(named) is str else ""
    return LogRecord(
        trace_id=trace_id_from(record.trace_id, required=False),
        span_id=span_id_from(record.span_id, required=False),
        time_ns=record.time_unix_nano or record.observed_time_unix_nano,
        event_name=bounded_text(name, "event name", bounds),
        attributes=attributes,
        resource=resource,
        severity=record.severity_number,
    )


def _attributes(pairs: RepeatedCompositeFieldContainer[KeyValue], bounds: Bounds) -> Attributes:
    count = len(pairs)
    if not count:
        return NO_ATTRIBUTES
    check_count(count, bounds)
    values: dict[str, object] = {}
    for pair in pairs:
        value = pair.value
        # Most values are strings: one call reads one; "" is an empty string or another kind.
        text = value.string_value
        values[pair.key] = text if text else _scalar(value)
    return kept_attributes(values, count, bounds)


def _scalar(value: AnyValue) -> object:
    """A scalar AnyValue's value; None for any other (an array, a list, bytes: not read)."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in _SCALARS else None


def traces_response(rejected: int, message: str, *, json: bool) -> bytes:
    """The answer to a traces export: partial success when spans were ``rejected``."""
    if json:
        return _json_answer("rejectedSpans", rejected, message)
    answer = ExportTraceServiceResponse()
    if rejected or message:
        answer.partial_success.rejected_spans = rejected
        answer.partial_success.error_message = message[:MAX_MESSAGE_CHARS]
    return answer.SerializeToString()


def logs_response(rejected: int, message: str, *, json: bool) -> bytes:
    """The answer to a logs export: partial success when log records were ``rejected``."""
    if json:
        return _json_answer("rejectedLogRecords", rejected, message)
    answer = ExportLogsServiceResponse()
    if rejected or message:
        answer.partial_success.rejected_log_records = rejected
        answer.partial_success.error_message = message[:MAX_MESSAGE_CHARS]
    return answer.SerializeToString()


def _json_answer(count_key: str, rejected: int, message: str) -> bytes:
    """OTLP/JSON's answer: the count is an int64, so a string; nothing when all was accepted."""
    if not rejected and not message:
        return b"{}"
    partial = {count_key: str(rejected), "errorMessage": message[:MAX_MESSAGE_CHARS]}
    return msgspec.json.encode({"partialSuccess": partial})
