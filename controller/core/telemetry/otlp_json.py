"""OTLP/JSON export requests (``/v1/traces``, ``/v1/logs``) into the neutral spans and logs.

The OTLP/JSON rules: keys in lowerCamelCase (snake_case is read too, as
protobuf's JSON parsers read it), trace and span ids as hex strings, 64-bit
integers as JSON strings or numbers, enums as integers (their protobuf names
are read too), an AnyValue as an object of one of ``stringValue``,
``boolValue``, ``intValue``, ``doubleValue``, ``arrayValue``, ``kvlistValue``,
``bytesValue``. Unknown fields are skipped, as a newer exporter may send them.

msgspec decodes the whole export into typed structs at once (the fast path).
It needs no scan of the nesting first (it would cost half as much as the
decoding): msgspec guards its own recursion, and a ``RecursionError``
(caught) ends it like any other refusal. If msgspec refuses the export, the
slow path bounds the body's nesting (:data:`MAX_BODY_NESTING`, before any
parser recurses), decodes the envelope with each resource and item left as
raw bytes, then each item on its own: an item that is malformed is refused,
its siblings are kept. When even the envelope does not decode because some
text is not valid (a lone surrogate escape such as ``\\ud800``, bytes that are
not UTF-8), the body is read by the standard library's parser, which takes
both (bad bytes as surrogates), and each resource and item is encoded again
on its own: one holding such text is refused (``malformed``), its siblings
kept. A body that is not an export is refused whole
(:data:`~.signals.WHOLE_BODY`). An attribute's value that is no scalar is
dropped unread (:mod:`.json_shapes`), however deep it nests within the body's
bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec

from controller.core.telemetry.json_shapes import (
    FAILURES,
    KINDS,
    LOGS,
    RAW_LOGS,
    RAW_TRACES,
    RECORD,
    RESOURCE,
    SPAN,
    STATUSES,
    TRACES,
    EventJson,
    LogRecordJson,
    LogResourceAnyJson,
    LogResourceJson,
    LogResourceRawJson,
    LogsAnyJson,
    LogsExportJson,
    ResourceJson,
    SpanJson,
    TraceResourceAnyJson,
    TraceResourceJson,
    TraceResourceRawJson,
    TracesAnyJson,
    TracesJson,
    attributes_of,
    enum_of,
)
from controller.core.telemetry.signals import (
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
    check_events,
    items_of,
    span_id_of,
    trace_id_of,
)
from controller.core.wire import nesting_exceeds

MAX_BODY_NESTING: Final = 256
"""Deeper than this, the body is refused whole before it is parsed."""

T = TypeVar("T")
S = TypeVar("S")
Out = TypeVar("Out")


def decode_traces_json(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Spans | Refusal:
    """The spans of an OTLP/JSON ``ExportTraceServiceRequest``, or why the body is refused."""
    found: tuple[list[Span], list[Refusal]] | Refusal
    if isinstance(fast := _attempt(TRACES, raw), TracesJson):
        typed = [(r.resource, _spans_in(r)) for r in fast.resourceSpans or fast.resource_spans]
        found = items_of(typed, bounds, _resource_of, _span_of)
    else:
        if nesting_exceeds(raw, MAX_BODY_NESTING):
            return Refusal(WHOLE_BODY, "malformed", f"nested deeper than {MAX_BODY_NESTING} levels")
        slow = _envelope(RAW_TRACES, TracesAnyJson, raw)
        if isinstance(slow, Refusal):
            return slow
        groups = [(r.resource, _spans_in(r)) for r in slow.resourceSpans or slow.resource_spans]
        found = items_of(groups, bounds, _raw_resource_of, _raw(SPAN, _span_of))
    return found if isinstance(found, Refusal) else Spans(*found)


def decode_logs_json(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Logs | Refusal:
    """The log records of an OTLP/JSON ``ExportLogsServiceRequest``, or why the body is refused."""
    found: tuple[list[LogRecord], list[Refusal]] | Refusal
    if isinstance(fast := _attempt(LOGS, raw), LogsExportJson):
        typed = [(r.resource, _records_in(r)) for r in fast.resourceLogs or fast.resource_logs]
        found = items_of(typed, bounds, _resource_of, _record_of)
    else:
        if nesting_exceeds(raw, MAX_BODY_NESTING):
            return Refusal(WHOLE_BODY, "malformed", f"nested deeper than {MAX_BODY_NESTING} levels")
        slow = _envelope(RAW_LOGS, LogsAnyJson, raw)
        if isinstance(slow, Refusal):
            return slow
        groups = [(r.resource, _records_in(r)) for r in slow.resourceLogs or slow.resource_logs]
        found = items_of(groups, bounds, _raw_resource_of, _raw(RECORD, _record_of))
    return found if isinstance(found, Refusal) else Logs(*found)


def _attempt(decoder: msgspec.json.Decoder[T], raw: bytes) -> T | Refusal:
    try:
        return decoder.decode(raw)
    except FAILURES as exc:
        detail = str(exc) if isinstance(exc, msgspec.MsgspecError) else type(exc).__name__
        return Refusal(WHOLE_BODY, "malformed", f"not an OTLP/JSON export: {detail}"[:200])


def _envelope(decoder: msgspec.json.Decoder[T], salvage: type[S], raw: bytes) -> T | S | Refusal:
    """The export with each resource and item left raw; else, if some text in it is not
    valid, as the standard library's parser reads it (:func:`_salvaged`); else why it is
    no export."""
    found = _attempt(decoder, raw)
    if not isinstance(found, Refusal):
        return found
    salvaged = _salvaged(salvage, raw)
    return found if salvaged is None else salvaged


NOT_UTF_8 = "text that is not UTF-8 (bad bytes, a lone surrogate)"
"""Why an item whose text is not UTF-8 is refused, whichever reader found it."""


def _salvaged(shape: type[S], raw: bytes) -> S | None:
    """The export as the standard library's parser reads it (a lone surrogate kept as it
    is, bytes that are not UTF-8 as surrogates), each resource and item a plain tree;
    None when that is no export either. The body's nesting is bounded already."""
    try:
        tree = json.loads(raw.decode("utf-8", "surrogateescape"))
        return msgspec.convert(tree, shape, strict=False)
    except (ValueError, RecursionError, msgspec.MsgspecError):
        return None


def _spans_in(group: TraceResourceJson | TraceResourceRawJson | TraceResourceAnyJson) -> list[Any]:
    return [span for scope in group.scopeSpans or group.scope_spans for span in scope.spans]


def _records_in(group: LogResourceJson | LogResourceRawJson | LogResourceAnyJson) -> list[Any]:
    scopes = group.scopeLogs or group.scope_logs
    return [record for scope in scopes for record in scope.logRecords or scope.log_records]


def _raw(
    decoder: msgspec.json.Decoder[Any], item_of: Callable[[Any, Attributes, Bounds], Out]
) -> Callable[[Any, Attributes, Bounds], Out]:
    """``item_of`` for an item still in raw bytes (or a salvaged tree): decoded on its own,
    then read."""

    def read(raw: Any, resource: Attributes, bounds: Bounds) -> Out:
        return item_of(_decoded(decoder, raw), resource, bounds)

    return read


def _decoded(decoder: msgspec.json.Decoder[Any], raw: Any) -> Any:
    text = b""
    try:
        text = bytes(raw) if isinstance(raw, msgspec.Raw) else msgspec.json.encode(raw)
        return decoder.decode(text)
    except (UnicodeEncodeError, UnicodeDecodeError):
        raise Refused("malformed", NOT_UTF_8) from None
    except FAILURES as exc:
        # msgspec 0.23 checks the UTF-8 of a raw item's strings itself, in words of its own
        if not _utf_8(text):
            raise Refused("malformed", NOT_UTF_8) from None
        detail = str(exc) if isinstance(exc, msgspec.MsgspecError) else type(exc).__name__
        raise Refused("malformed", detail) from None


def _utf_8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _raw_resource_of(raw: Any, bounds: Bounds) -> Attributes:
    resource: ResourceJson | None = _decoded(RESOURCE, raw)
    return _resource_of(resource, bounds)


def _resource_of(resource: ResourceJson | None, bounds: Bounds) -> Attributes:
    if resource is None:
        return NO_ATTRIBUTES
    return attributes_of(resource.attributes, bounds)


def _span_of(span: SpanJson, resource: Attributes, bounds: Bounds) -> Span:
    events = span.events
    if events:
        check_events(len(events), bounds)
    status, kind = span.status, span.kind
    code = 0 if status is None else status.code
    return Span(
        trace_id=trace_id_of(span.traceId or span.trace_id, required=True),
        span_id=span_id_of(span.spanId or span.span_id, required=True),
        parent_span_id=span_id_of(span.parentSpanId or span.parent_span_id, required=False),
        name=bounded_text(span.name, "name", bounds),
        kind=kind if type(kind) is int else enum_of(kind, KINDS, "kind"),
        start_ns=span.startTimeUnixNano or span.start_time_unix_nano,
        end_ns=span.endTimeUnixNano or span.end_time_unix_nano,
        status_code=code if type(code) is int else enum_of(code, STATUSES, "status code"),
        attributes=attributes_of(span.attributes, bounds),
        events=tuple(_event_of(event, bounds) for event in events) if events else (),
        resource=resource,
    )


def _event_of(event: EventJson, bounds: Bounds) -> SpanEvent:
    return SpanEvent(
        name=bounded_text(event.name, "event name", bounds),
        time_ns=event.timeUnixNano or event.time_unix_nano,
        attributes=attributes_of(event.attributes, bounds),
    )


def _record_of(record: LogRecordJson, resource: Attributes, bounds: Bounds) -> LogRecord:
    attributes = attributes_of(record.attributes, bounds)
    name = record.eventName or record.event_name
    if not name:
        named = attributes.get(EVENT_NAME_ATTRIBUTE)
        name = named if type(named) is str else ""
    time_ns = record.timeUnixNano or record.time_unix_nano
    return LogRecord(
        trace_id=trace_id_of(record.traceId or record.trace_id, required=False),
        span_id=span_id_of(record.spanId or record.span_id, required=False),
        time_ns=time_ns or record.observedTimeUnixNano or record.observed_time_unix_nano,
        event_name=bounded_text(name, "event name", bounds),
        attributes=attributes,
        resource=resource,
        severity=record.severityNumber or record.severity_number,
    )
