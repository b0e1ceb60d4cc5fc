"""The shapes of OTLP/JSON as msgspec structs, and its AnyValue read into a plain tree.

Each struct names a field in lowerCamelCase, as OTLP/JSON writes it, and
again in snake_case, as protobuf's JSON parsers also read it; the readers take
the first one set. 64-bit integers are decoded with ``strict=False``, which
reads them from JSON strings as well as numbers. An AnyValue is left to
msgspec as a plain object and read by :func:`attributes_of`: strings at once,
the other scalars through one reader per kind, an array, key-value list or
bytes not at all (dropped: nothing read is one), then bounded like every
decoder's attributes by :func:`~.signals.kept_attributes`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

import msgspec

from controller.core.telemetry.signals import (
    MAX_INT64,
    NO_ATTRIBUTES,
    Attributes,
    Bounds,
    Refused,
    check_count,
    kept_attributes,
)

NULL: Final = msgspec.Raw(b"null")
"""A resource left out, as raw JSON (msgspec reads a Raw in no union)."""
U64 = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT64)]
"""A time in ns: fixed64 in protobuf, but past 2⁶³ (the year 2262) it is no time."""
Enum = int | str
KINDS: Final = {
    "SPAN_KIND_UNSPECIFIED": 0,
    "SPAN_KIND_INTERNAL": 1,
    "SPAN_KIND_SERVER": 2,
    "SPAN_KIND_CLIENT": 3,
    "SPAN_KIND_PRODUCER": 4,
    "SPAN_KIND_CONSUMER": 5,
}
STATUSES: Final = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class KeyValueJson(msgspec.Struct):
    key: str = ""
    value: Any = None


class ResourceJson(msgspec.Struct):
    attributes: list[KeyValueJson] = []


class EventJson(msgspec.Struct):
    name: str = ""
    timeUnixNano: U64 = 0
    time_unix_nano: U64 = 0
    attributes: list[KeyValueJson] = []


class StatusJson(msgspec.Struct):
    code: Enum = 0


class SpanJson(msgspec.Struct):
    traceId: str = ""
    trace_id: str = ""
    spanId: str = ""
    span_id: str = ""
    parentSpanId: str = ""
    parent_span_id: str = ""
    name: str = ""
    kind: Enum = 0
    startTimeUnixNano: U64 = 0
    start_time_unix_nano: U64 = 0
    endTimeUnixNano: U64 = 0
    end_time_unix_nano: U64 = 0
    attributes: list[KeyValueJson] = []
    events: list[EventJson] = []
    status: StatusJson | None = None


class LogRecordJson(msgspec.Struct):
    timeUnixNano: U64 = 0
    time_unix_nano: U64 = 0
    observedTimeUnixNano: U64 = 0
    observed_time_unix_nano: U64 = 0
    traceId: str = ""
    trace_id: str = ""
    spanId: str = ""
    span_id: str = ""
    eventName: str = ""
    event_name: str = ""
    severityNumber: int = 0
    severity_number: int = 0
    attributes: list[KeyValueJson] = []


class TraceScopeJson(msgspec.Struct):
    spans: list[SpanJson] = []


class TraceResourceJson(msgspec.Struct):
    resource: ResourceJson | None = None
    scopeSpans: list[TraceScopeJson] = []
    scope_spans: list[TraceScopeJson] = []


class TracesJson(msgspec.Struct):
    resourceSpans: list[TraceResourceJson] = []
    resource_spans: list[TraceResourceJson] = []


class LogScopeJson(msgspec.Struct):
    logRecords: list[LogRecordJson] = []
    log_records: list[LogRecordJson] = []


class LogResourceJson(msgspec.Struct):
    resource: ResourceJson | None = None
    scopeLogs: list[LogScopeJson] = []
    scope_logs: list[LogScopeJson] = []


class LogsExportJson(msgspec.Struct):
    resourceLogs: list[LogResourceJson] = []
    resource_logs: list[LogResourceJson] = []


# The slow path's envelopes: each resource and item left as raw bytes.
class TraceScopeRawJson(msgspec.Struct):
    spans: list[msgspec.Raw] = []


class TraceResourceRawJson(msgspec.Struct):
    resource: msgspec.Raw = NULL
    scopeSpans: list[TraceScopeRawJson] = []
    scope_spans: list[TraceScopeRawJson] = []


class TracesRawJson(msgspec.Struct):
    resourceSpans: list[TraceResourceRawJson] = []
    resource_spans: list[TraceResourceRawJson] = []


class LogScopeRawJson(msgspec.Struct):
    logRecords: list[msgspec.Raw] = []
    log_records: list[msgspec.Raw] = []


class LogResourceRawJson(msgspec.Struct):
    resource: msgspec.Raw = NULL
    scopeLogs: list[LogScopeRawJson] = []
    scope_logs: list[LogScopeRawJson] = []


class LogsRawJson(msgspec.Struct):
    resourceLogs: list[LogResourceRawJson] = []
    resource_logs: list[LogResourceRawJson] = []


# The salvage path's envelopes: text JSON reads but msgspec refuses (a lone
# surrogate, bytes that are not UTF-8), each resource and item a plain tree.
class TraceScopeAnyJson(msgspec.Struct):
    spans: list[Any] = []


class TraceResourceAnyJson(msgspec.Struct):
    resource: Any = None
    scopeSpans: list[TraceScopeAnyJson] = []
    scope_spans: list[TraceScopeAnyJson] = []


class TracesAnyJson(msgspec.Struct):
    resourceSpans: list[TraceResourceAnyJson] = []
    resource_spans: list[TraceResourceAnyJson] = []


class LogScopeAnyJson(msgspec.Struct):
    logRecords: list[Any] = []
    log_records: list[Any] = []


class LogResourceAnyJson(msgspec.Struct):
    resource: Any = None
    scopeLogs: list[LogScopeAnyJson] = []
    scope_logs: list[LogScopeAnyJson] = []


class LogsAnyJson(msgspec.Struct):
    resourceLogs: list[LogResourceAnyJson] = []
    resource_logs: list[LogResourceAnyJson] = []


FAILURES = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)
TRACES = msgspec.json.Decoder(TracesJson, strict=False)
LOGS = msgspec.json.Decoder(LogsExportJson, strict=False)
RAW_TRACES = msgspec.json.Decoder(TracesRawJson, strict=False)
RAW_LOGS = msgspec.json.Decoder(LogsRawJson, strict=False)
SPAN = msgspec.json.Decoder(SpanJson, strict=False)
RECORD = msgspec.json.Decoder(LogRecordJson, strict=False)
RESOURCE = msgspec.json.Decoder(ResourceJson | None, strict=False)


def enum_of(value: int | str, names: dict[str, int], what: str) -> int:
    if type(value) is int:
        return value
    number = names.get(value) if isinstance(value, str) else None
    if number is None:
        if isinstance(value, str) and value.isdecimal() and len(value) < 10:
            return int(value)
        raise Refused("malformed", f"{what} {str(value)[:40]!r} is not an enum value")
    return number


def attributes_of(pairs: list[KeyValueJson], bounds: Bounds) -> Attributes:
    """The attributes of a list of KeyValues, each AnyValue read into a plain tree, bounded."""
    if not pairs:
        return NO_ATTRIBUTES
    check_count(len(pairs), bounds)
    values: dict[str, object] = {}
    for pair in pairs:
        value = pair.value
        # Most values are strings: read them at once, the rest through their readers.
        if type(value) is dict and len(value) == 1:
            text = value.get("stringValue")
            if type(text) is str:
                values[pair.key] = text
                continue
        values[pair.key] = _any(value)
    return kept_attributes(values, len(pairs), bounds)


def _any(value: Any) -> object:
    if value is None:
        return None
    if type(value) is not dict or len(value) > 1:
        raise Refused("malformed", "an attribute value is not an AnyValue of one value")
    for tag, payload in value.items():
        reader = _READERS.get(tag)
        if reader is None:
            raise Refused("malformed", f"an AnyValue of unknown kind {tag[:40]!r}")
        return reader(payload)
    return None  # {}: an empty AnyValue


def _string(payload: Any) -> object:
    if type(payload) is not str:
        raise Refused("malformed", "stringValue is not a string")
    return payload


def _bool(payload: Any) -> object:
    if type(payload) is not bool:
        raise Refused("malformed", "boolValue is not true or false")
    return payload


def _int(payload: Any) -> object:
    if type(payload) is str and 0 < len(payload) <= 20 and payload.lstrip("-").isdecimal():
        payload = int(payload)
    if type(payload) is not int or not -MAX_INT64 - 1 <= payload <= MAX_INT64:
        raise Refused("malformed", "intValue is not a 64-bit integer")
    return payload


def _double(payload: Any) -> object:
    if type(payload) is float or type(payload) is int:
        return float(payload)
    if type(payload) is str and len(payload) <= 40:
        try:
            return float(payload)
        except ValueError:
            pass
    raise Refused("malformed", "doubleValue is not a number")


def _unread(payload: Any) -> object:
    """An array, a key-value list or bytes: nothing the controller reads is one, so it is
    dropped as it is, not walked (msgspec bounded its nesting as it decoded it)."""
    return None


_READERS: Final[dict[str, Callable[[Any], object]]] = {
    "stringValue": _string,
    "string_value": _string,
    "boolValue": _bool,
    "bool_value": _bool,
    "intValue": _int,
    "int_value": _int,
    "doubleValue": _double,
    "double_value": _double,
    "bytesValue": _unread,
    "bytes_value": _unread,
    "arrayValue": _unread,
    "array_value": _unread,
    "kvlistValue": _unread,
    "kvlist_value": _unread,
}
