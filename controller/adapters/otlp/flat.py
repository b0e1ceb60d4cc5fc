"""OTLP/protobuf traces read a whole export at a time: the fast path of the Collector's records.

Where the native extension is installed (:mod:`.native`) it reads them
instead; this projection is the fallback without it, and what follows
describes it.

Reading an attribute through ``opentelemetry-proto``'s classes makes a Python
object of the key-value pair and one of its AnyValue, about 0.6 µs an
attribute; a span with its evaluation event has ten, so that was most of the
cost of a span on the Kafka path. Here the export is parsed with a
projection of the OTLP schema (:func:`_classes`, the same field numbers) in
which each attribute is left as its bytes; the attributes of every resource,
span and event of the export are then parsed together, as two flat lists
(keys, and values of each scalar type), and cut back into each one's
dictionary by its count: four parses in C an export instead of objects per
attribute.

It reads only what it can read exactly as :func:`~.proto.decode_traces_proto`
does: an export the OTLP schema itself parses (so text is UTF-8 and nothing
nests past protobuf's limit), holding scalar attributes (a string past its bound
cut, as there), keys within their bound, ids of their lengths, names within
their bound. An export with anything else (an array, a key-value list or bytes
as a value, an empty value, a key past its bound, a bad id, too many items or
events) is handed to
:func:`~.proto.decode_traces_proto`, which refuses what it must, item by item,
so the answer is always the one it gives (``tests/unit/adapters`` compares
them).
"""

from __future__ import annotations

import re
from itertools import chain
from operator import itemgetter
from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from controller.adapters.otlp.native import decode_traces_native, native_decoder
from controller.adapters.otlp.proto import decode_traces_proto
from controller.core.telemetry import (
    DEFAULT_BOUNDS,
    NO_ATTRIBUTES,
    Attributes,
    Bounds,
    Refusal,
    Span,
    SpanEvent,
    Spans,
)

_STRING, _BOOL, _INT, _DOUBLE = 10, 16, 24, 33
"""The first byte of an AnyValue holding a string, a bool, an int64, a double."""
_first = itemgetter(0)
_NOT_STRING: Final = re.compile(rb"[^\n]")
"""A value's first byte that is not a string's."""
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


def _classes() -> dict[str, Any]:
    """Message classes of the projection: OTLP's trace export, attributes left as bytes."""
    f = descriptor_pb2.FieldDescriptorProto
    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    file = descriptor_pb2.FileDescriptorProto(
        name="controller_otlp_flat.proto", package="controller_otlp_flat", syntax="proto3"
    )
    shapes: dict[str, list[tuple[str, int, int, int, str]]] = {
        # A key-value pair's key, and a scalar AnyValue's one field.
        "Pairs": [
            ("key", 1, f.TYPE_STRING, repeated, ""),
            ("value", 2, f.TYPE_BYTES, repeated, ""),
        ],
        "Values": [
            ("string_value", 1, f.TYPE_STRING, repeated, ""),
            ("bool_value", 2, f.TYPE_BOOL, repeated, ""),
            ("int_value", 3, f.TYPE_INT64, repeated, ""),
            ("double_value", 4, f.TYPE_DOUBLE, repeated, ""),
        ],
        "Status": [("code", 3, f.TYPE_INT32, optional, "")],
        "Event": [
            ("time_unix_nano", 1, f.TYPE_FIXED64, optional, ""),
            ("name", 2, f.TYPE_STRING, optional, ""),
            ("attributes", 3, f.TYPE_BYTES, repeated, ""),
        ],
        "Span": [
            ("trace_id", 1, f.TYPE_BYTES, optional, ""),
            ("span_id", 2, f.TYPE_BYTES, optional, ""),
            ("parent_span_id", 4, f.TYPE_BYTES, optional, ""),
            ("name", 5, f.TYPE_STRING, optional, ""),
            ("kind", 6, f.TYPE_INT32, optional, ""),
            ("start_time_unix_nano", 7, f.TYPE_FIXED64, optional, ""),
            ("end_time_unix_nano", 8, f.TYPE_FIXED64, optional, ""),
            ("attributes", 9, f.TYPE_BYTES, repeated, ""),
            ("events", 11, f.TYPE_MESSAGE, repeated, "Event"),
            ("status", 15, f.TYPE_MESSAGE, optional, "Status"),
        ],
        "Resource": [("attributes", 1, f.TYPE_BYTES, repeated, "")],
        "ScopeSpans": [("spans", 2, f.TYPE_MESSAGE, repeated, "Span")],
        "ResourceSpans": [
            ("resource", 1, f.TYPE_MESSAGE, optional, "Resource"),
            ("scope_spans", 2, f.TYPE_MESSAGE, repeated, "ScopeSpans"),
        ],
        "Export": [("resource_spans", 1, f.TYPE_MESSAGE, repeated, "ResourceSpans")],
    }
    for name, fields in shapes.items():
        message = file.message_type.add(name=name)
        for field, number, kind, label, of in fields:
            added = message.field.add(name=field, number=number, type=kind, label=label)
            if of:
                added.type_name = f".{file.package}.{of}"
            if label == repeated and kind in (f.TYPE_BOOL, f.TYPE_INT64, f.TYPE_DOUBLE):
                added.options.packed = False  # written back as read: see _scalars
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}"))
        for name in shapes
    }


_CLASSES: Final = _classes()
_EXPORT, _PAIRS, _VALUES = _CLASSES["Export"], _CLASSES["Pairs"], _CLASSES["Values"]


def decode_traces_flat(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Spans | Refusal:
    """The spans of a protobuf ``ExportTraceServiceRequest``: what
    :func:`~.proto.decode_traces_proto` answers, sooner (natively where
    :mod:`.native`'s extension is installed, else by this module's projection)."""
    spans = decode_traces_native(raw, bounds) if _NATIVE else _fast(raw, bounds)
    return decode_traces_proto(raw, bounds) if spans is None else spans


def decode_traces_projected(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Spans | Refusal:
    """What :func:`decode_traces_flat` answers without the native extension."""
    spans = _fast(raw, bounds)
    return decode_traces_proto(raw, bounds) if spans is None else spans


_NATIVE: Final = native_decoder()


def _fast(raw: bytes, bounds: Bounds) -> Spans | None:
    """The spans, or None when the export holds anything the fast path does not read."""
    try:
        ExportTraceServiceRequest.FromString(raw)  # the schema's own checks, in C
        export = _EXPORT.FromString(raw)
    except (DecodeError, ValueError, RuntimeError):
        return None
    groups = [
        (group.resource, [span for scope in group.scope_spans for span in scope.spans])
        for group in export.resource_spans
    ]
    spans = [span for _, items in groups for span in items]
    if len(spans) > bounds.max_items:
        return None
    events = [span.events for span in spans]
    flat_events = list(chain.from_iterable(events))
    if flat_events and (
        max(map(len, events)) > bounds.max_events
        or max(len(event.name) for event in flat_events) > bounds.max_value_chars
    ):
        return None
    dicts = _attribute_sets(
        [
            *(resource.attributes for resource, _ in groups),
            *(span.attributes for span in spans),
            *(event.attributes for event in flat_events),
        ],
        bounds,
    )
    if dicts is None:
        return None
    resources = dicts[: len(groups)]
    owned = iter(dicts[len(groups) : len(groups) + len(spans)])
    made = iter(
        [
            SpanEvent(e.name, e.time_unix_nano, attributes)
            for e, attributes in zip(flat_events, dicts[len(groups) + len(spans) :], strict=True)
        ]
    )
    kept: list[Span] = []
    for resource, (_, items) in zip(resources, groups, strict=True):
        for span in items:
            one = _span(span, next(owned), resource, made, bounds)
            if one is None:
                return None
            kept.append(one)
    return Spans(kept, [])


def _span(
    span: Any, attributes: Attributes, resource: Attributes, events: Any, bounds: Bounds
) -> Span | None:
    """One span of the projection, as the neutral type; None when its ids or name are off."""
    trace, own, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace) != 16 or trace == _ZERO_TRACE or len(own) != 8 or own == _ZERO_SPAN:
        return None
    if parent and len(parent) != 8:
        return None
    name = span.name
    if len(name) > bounds.max_value_chars:
        return None
    count = len(span.events)
    return Span(
        trace_id=trace.hex(),
        span_id=own.hex(),
        parent_span_id="" if not parent or parent == _ZERO_SPAN else parent.hex(),
        name=name,
        kind=span.kind,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_code=span.status.code,
        attributes=attributes,
        events=tuple([next(events) for _ in range(count)]) if count else (),
        resource=resource,
    )


def _attribute_sets(sets: list[Any], bounds: Bounds) -> list[Attributes] | None:
    """Each set of raw key-value pairs as its dictionary, all parsed at once; None when one
    holds anything but scalars within the bounds."""
    counts = list(map(len, sets))
    if counts and max(counts) > bounds.max_attributes:
        return None
    total = sum(counts)
    if not total:
        return [NO_ATTRIBUTES] * len(sets)
    found = _pairs(b"".join(chain.from_iterable(sets)), total, bounds)
    if found is None:
        return None
    keys, values = found
    out: list[Attributes] = []
    at = 0
    for count in counts:
        end = at + count
        out.append(dict(zip(keys[at:end], values[at:end])) if count else NO_ATTRIBUTES)  # noqa: B905
        at = end
    return out


def _pairs(joined: bytes, total: int, bounds: Bounds) -> tuple[list[str], list[Any]] | None:
    """The keys and values of ``total`` key-value pairs in a row, or None (see above)."""
    try:
        pairs = _PAIRS.FromString(joined)
        keys, raws = list(pairs.key), list(pairs.value)
        if len(keys) != total or len(raws) != total or not all(raws):
            return None  # a pair without its key or its value, or with two
        values = _scalars(b"".join(raws))
    except (DecodeError, ValueError, RuntimeError):
        return None
    if values is None or max(map(len, keys)) > bounds.max_key_chars:
        return None
    texts = values.string_value
    if len(texts) == total:  # every value a string: the usual case
        return keys, _cut(list(texts), bounds.max_value_chars)
    mixed = _mixed(raws, values, total, bounds)
    return None if mixed is None else (keys, mixed)


def _cut(texts: list[str], limit: int) -> list[str]:
    """Each string cut to ``limit``, as :func:`~controller.core.telemetry.kept_attributes`
    cuts one (a stack trace in an exception's event, usually)."""
    if texts and max(map(len, texts)) > limit:
        return [text[:limit] for text in texts]
    return texts


def _scalars(joined: bytes) -> Any:
    """The values, each a scalar AnyValue's one field, parsed together; None if any held
    another field (an array, a key-value list, bytes: unknown to the projection, and in
    an AnyValue of two fields the last one is what counts)."""
    values = _VALUES.FromString(joined)
    values.DiscardUnknownFields()
    return values if values.ByteSize() == len(joined) else None


def _mixed(raws: list[bytes], values: Any, total: int, bounds: Bounds) -> list[Any] | None:
    """The values in order when not all are strings; None unless each is one scalar.

    The strings are taken in runs, and each other value put between them: most
    attributes are strings, so a span's one status code costs one step, not ten.
    """
    texts = list(values.string_value)
    others = (values.bool_value, values.int_value, values.double_value)
    if len(texts) + sum(map(len, others)) != total:
        return None  # an AnyValue with more than one field
    tags = bytes(map(_first, raws))
    texts = _cut(texts, bounds.max_value_chars)
    taken = dict(zip((_BOOL, _INT, _DOUBLE), (iter(o).__next__ for o in others), strict=True))
    out: list[Any] = []
    done = strings = 0
    for found in _NOT_STRING.finditer(tags):
        at = found.start()
        take = taken.get(tags[at])
        if take is None:
            return None
        out += texts[strings : strings + at - done]
        strings += at - done
        out.append(take())
        done = at + 1
    out += texts[strings:]
    return out
