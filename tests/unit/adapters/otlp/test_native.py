"""The native reader of trace exports answers what the Python decoders answer, byte for byte.

Each export here, written by the SDK, generated (hypothesis) or broken on purpose
(bad UTF-8, nesting past protobuf's limit, over-long strings, cut short, bytes
flipped), is read by :func:`decode_traces_flat` with the native extension and by
the two Python decoders; all three must give the same spans, in the same order,
with the same attributes (compared by ``repr``, so ``True`` is not ``1`` and a
dictionary's order counts) and the same refusals. Where the extension is not
installed they skip with SERVICE MISSING, and fail under CI (``make native`` builds it).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from controller.adapters.otlp import (
    decode_traces_native,
    decode_traces_projected,
    decode_traces_proto,
)
from controller.adapters.otlp.flat import decode_traces_flat
from controller.core.telemetry import DEFAULT_BOUNDS, Bounds, Refusal, Spans
from tests.support.otel.otlp_records import field, span_exports
from tests.unit.adapters.otlp.test_otlp_flat import sdk_export
from tests.unit.adapters.otlp.test_proto import UNPARSABLE, too_deep, with_span

pytestmark = pytest.mark.usefixtures("otlp_native")

SMALL = Bounds(max_items=6, max_attributes=5, max_events=3, max_key_chars=6, max_value_chars=8)
"""Bounds small enough that generated exports cross each of them often."""


def same_everywhere(raw: bytes, bounds: Bounds = DEFAULT_BOUNDS) -> Spans | Refusal:
    """The answer of the native path, checked equal to both Python decoders'."""
    native = decode_traces_flat(raw, bounds)
    expected = repr(decode_traces_proto(raw, bounds))
    assert repr(native) == expected
    assert repr(decode_traces_projected(raw, bounds)) == expected
    return native


def test_the_benchmarks_records_and_sdk_exports_are_read_natively() -> None:
    for raw in (
        sdk_export().SerializeToString(),
        *span_exports(300, 100, ["a", "b", "c"], units=40),
    ):
        read = decode_traces_native(raw)
        assert read is not None  # read natively, not handed on
        assert repr(read) == repr(decode_traces_proto(raw))


@pytest.mark.parametrize("raw", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_what_protobuf_refuses_is_handed_on_and_refused_alone(raw: bytes) -> None:
    assert decode_traces_native(raw) is None
    found = same_everywhere(raw)
    assert isinstance(found, Spans)
    assert [refusal.reason for refusal in found.refused] == ["malformed"]
    assert len(found.spans) == 2  # its siblings counted


def test_nesting_within_protobufs_limit_is_read_natively_and_past_ours_handed_on() -> None:
    shallow = with_span(too_deep(3))
    assert decode_traces_native(shallow) is not None
    same_everywhere(shallow)
    within_protobufs = with_span(too_deep(25))  # protobuf parses it; deeper than ours
    assert decode_traces_native(within_protobufs) is None
    same_everywhere(within_protobufs)


ODD = {
    "a second resource": field(1, field(1, b"") + field(1, b"")),
    "a resource field as a varint": b"\x0a\x02\x08\x01",
    "an unknown field": b"\x0a\x02\x78\x01",
    "a group": b"\x0a\x02\x0b\x0c",
    "a varint past ten bytes": b"\x0a\x0c\x10" + b"\xff" * 11,
    "a length past the end": b"\x0a\x7f\x12",
    "field number zero": b"\x0a\x02\x02\x00",
    "a value twice": field(
        1,
        field(
            2,
            field(
                2,
                field(1, b"\x01" * 16)
                + field(2, b"\x02" * 8)
                + field(9, field(1, b"k") + field(2, field(1, b"a")) + field(2, b"\x18\x05")),
            ),
        ),
    ),
}


@pytest.mark.parametrize("raw", ODD.values(), ids=ODD.keys())
def test_odd_wire_format_reads_the_same(raw: bytes) -> None:
    same_everywhere(raw)


def _value() -> st.SearchStrategy[AnyValue]:
    text = st.text(max_size=12) | st.sampled_from(["", "treatment", "é" * 9, "x" * 40])
    scalar = st.one_of(
        text.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=True).map(lambda f: AnyValue(double_value=f)),
        st.binary(max_size=4).map(lambda b: AnyValue(bytes_value=b)),
        st.just(AnyValue()),
    )
    return st.recursive(
        scalar,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3).map(lambda v: AnyValue(array_value=ArrayValue(values=v))),
            st.lists(st.tuples(st.text(max_size=3), inner), max_size=3).map(
                lambda kv: AnyValue(
                    kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kv])
                )
            ),
        ),
        max_leaves=4,
    )


_KEYS = st.sampled_from(["k", "feature_flag.key", "a", "é", "kkkkkkk", ""]) | st.text(max_size=8)
_PAIRS = st.lists(st.builds(KeyValue, key=_KEYS, value=_value()), max_size=7)


def _id(length: int, odd: list[bytes]) -> st.SearchStrategy[bytes]:
    """Mostly a good id (so that most spans are read natively), now and then a bad one."""
    good = st.binary(min_size=length, max_size=length).filter(any)
    bad = st.sampled_from([bytes(length), *odd])
    return st.integers(0, 39).flatmap(lambda roll: bad if roll == 0 else good)


_ID16 = _id(16, [b"\x02" * 8, b""])
_ID8 = _id(8, [b"\x04" * 9, b""])


@st.composite
def _span(draw: st.DrawFn) -> ProtoSpan:
    span = ProtoSpan(
        trace_id=draw(_ID16),
        span_id=draw(_ID8),
        parent_span_id=draw(st.sampled_from([b"", bytes(8)]) | _ID8),
        name=draw(st.text(max_size=10)),
        kind=ProtoSpan.SpanKind.ValueType(draw(st.sampled_from([0, 1, 2, 5, 9, -3]))),
        start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        trace_state=draw(st.text(max_size=3)),
    )
    span.attributes.extend(draw(_PAIRS))
    for _ in range(draw(st.integers(0, 4))):
        name, time_ns = draw(st.text(max_size=10)), draw(st.integers(0, 9))
        event = span.events.add(name=name, time_unix_nano=time_ns)
        event.attributes.extend(draw(_PAIRS))
    if draw(st.booleans()):
        span.links.add(trace_id=b"\x05" * 16, span_id=b"\x06" * 8).attributes.extend(draw(_PAIRS))
    span.status.code = Status.StatusCode.ValueType(draw(st.sampled_from([0, 1, 2, 7])))
    return span


@st.composite
def _export(draw: st.DrawFn) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 3))):
        group = request.resource_spans.add()
        group.resource.attributes.extend(draw(_PAIRS))
        for _ in range(draw(st.integers(0, 3))):
            scope = group.scope_spans.add()
            scope.scope.name = draw(st.text(max_size=3))
            scope.spans.extend(draw(st.lists(_span(), max_size=4)))
    return request.SerializeToString()


_FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(raw=_export(), small=st.booleans())
def test_generated_exports_read_the_same(raw: bytes, small: bool) -> None:
    same_everywhere(raw, SMALL if small else DEFAULT_BOUNDS)


@_FAST
@given(raw=_export(), data=st.data())
def test_exports_cut_short_or_with_a_byte_changed_read_the_same(
    raw: bytes, data: st.DataObject
) -> None:
    if not raw:
        return
    at = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.sampled_from([0x00, 0x80, 0xFF, 0xC3, 0xED, 0x0A, 0x12, 0x7F]))
    same_everywhere(raw[:at])
    same_everywhere(raw[:at] + bytes([byte]) + raw[at + 1 :], SMALL)


def test_not_a_number_and_signed_zero_keep_their_values() -> None:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    )
    for key, number in (("nan", math.nan), ("neg", -0.0), ("inf", -math.inf)):
        span.attributes.add(key=key, value=AnyValue(double_value=number))
    found = decode_traces_native(request.SerializeToString())
    assert found is not None
    assert repr(found) == repr(decode_traces_proto(request.SerializeToString()))
