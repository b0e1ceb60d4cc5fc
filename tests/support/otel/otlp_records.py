"""Collector records of many spans, made fast: each span's protobuf written once per kind of
span and its ids, times and unit put in place, for the benchmark and the tests beside it.

A span here is a SERVER request ``GET /checkout`` with its HTTP status (2% are 500s,
status ERROR) and one ``feature_flag.evaluation`` event: a flag, its variant
(``treatment`` or ``control``, half each), the unit (``feature_flag.context.id``) and
``feature_flag.version``, as OpenFeature's hooks record one. The bytes are what
``opentelemetry-proto`` serializes for such a span (a test compares them); only
fixed-length fields vary (the ids, the times, a unit of fixed width), so a template's
bytes with them put in place stay a valid message. Python's protobuf objects cost about
90 µs a span to build; this, a few.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

T0_NS = 1_763_780_000_000_000_000
_TRACE, _SPAN = b"\x01T" * 8, b"\x02S" * 4
_START, _END = b"\x03B" * 4, b"\x04E" * 4
_UNIT = b"UNIT" * 2
"""Placeholders a template carries where each span's own values go (same lengths)."""


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, str):
        return KeyValue(key=key, value=AnyValue(string_value=value))
    return KeyValue(key=key, value=AnyValue(int_value=value))


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def template(flag: str, variant: str, version: int, *, error: bool) -> bytes:
    """A ``ScopeSpans.spans`` field holding one span, with placeholders."""
    start = int.from_bytes(_START, "little")
    span = Span(
        trace_id=_TRACE,
        span_id=_SPAN,
        name="GET /checkout",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=int.from_bytes(_END, "little"),
    )
    span.attributes.extend(
        [
            _kv("http.request.method", "GET"),
            _kv("http.route", "/checkout"),
            _kv("http.response.status_code", 500 if error else 200),
        ]
    )
    if error:
        span.status.code = Status.STATUS_CODE_ERROR
    event = span.events.add(name="feature_flag.evaluation", time_unix_nano=start)
    event.attributes.extend(
        [
            _kv("feature_flag.key", flag),
            _kv("feature_flag.result.variant", variant),
            _kv("feature_flag.context.id", _UNIT.decode()),
            _kv("feature_flag.version", str(version)),
            _kv("feature_flag.provider.name", "rollout-controller"),
            _kv("feature_flag.result.reason", "split"),
        ]
    )
    return field(2, span.SerializeToString())


def span_exports(
    spans: int,
    per_record: int,
    flags: Sequence[str],
    *,
    units: int,
    version: int = 1,
    seed: int = 1,
    start_ns: int = T0_NS,
) -> list[bytes]:
    """``spans`` spans (flags in turn) in ``ExportTraceServiceRequest`` records of
    ``per_record``; units ``u0000000`` up to ``units``; span ``i`` starts at ``start_ns``
    plus ``i`` ms."""
    rng = random.Random(seed)
    templates = {
        (flag, variant, error): template(flag, variant, version, error=error)
        for flag in flags
        for variant in ("treatment", "control")
        for error in (False, True)
    }
    resource = field(1, Resource(attributes=[_kv("service.name", "shop")]).SerializeToString())
    scope = field(1, InstrumentationScope(name="shop").SerializeToString())
    records = []
    for first in range(0, spans, per_record):
        parts = [scope]
        for i in range(first, min(first + per_record, spans)):
            variant = "treatment" if rng.random() < 0.5 else "control"
            span = templates[(flags[i % len(flags)], variant, rng.random() < 0.02)]
            start = start_ns + i * 1_000_000
            end = start + int(rng.lognormvariate(17, 0.5))  # about 24 ms
            parts.append(
                span.replace(_TRACE, rng.getrandbits(128).to_bytes(16, "big"))
                .replace(_SPAN, rng.getrandbits(64).to_bytes(8, "big"))
                .replace(_START, start.to_bytes(8, "little"))
                .replace(_END, end.to_bytes(8, "little"))
                .replace(_UNIT, b"u%07d" % rng.randrange(units))
            )
        records.append(field(1, resource + field(2, b"".join(parts))))
    return records
