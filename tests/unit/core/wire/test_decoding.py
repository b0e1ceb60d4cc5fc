"""Decoding: every reject reason, hostile input, and the fast decoder equals the contract."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.contracts import json_schemas
from controller.core.common.message_fields import MAX_CONVERSION_VALUE, MAX_LATENCY_MS
from controller.core.wire.decoding import (
    MAX_NESTING,
    ConversionIn,
    EventDecoder,
    ExposureIn,
    Rejection,
    RejectReason,
    RequestIn,
    decode_event,
    nesting_exceeds,
)
from controller.core.wire.messages import event_adapter

MAX = 4096


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "request",
        "v": 1,
        "id": "e-1",
        "ts": 1_763_780_000_000,
        "flag": "checkout.new-flow",
        "unit": "user-42",
        "arm": "treatment",
        "flag_version": 3,
        "error": False,
        "latency_ms": 12.5,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (orjson.dumps(event()), RequestIn),
        (orjson.dumps(event(type="exposure", error=..., latency_ms=...)), ExposureIn),
        (
            orjson.dumps(event(type="conversion", error=..., latency_ms=..., value=9.99)),
            ConversionIn,
        ),
        (orjson.dumps(event(ts="2026-11-22T10:00:00+01:00")), RequestIn),
        (orjson.dumps(event(latency_ms=None)), RequestIn),
        (orjson.dumps(event(latency_ms=0)), RequestIn),
    ],
)
def test_valid_events_decode(raw: bytes, expected: type) -> None:
    assert isinstance(decode_event(raw, max_bytes=MAX), expected)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, RejectReason.EMPTY),
        (b"", RejectReason.EMPTY),
        (b"x" * (MAX + 1), RejectReason.OVERSIZE),
        (b"{not json", RejectReason.MALFORMED_JSON),
        (b"\xff\xfe", RejectReason.MALFORMED_JSON),
        (b"[1, 2]", RejectReason.NOT_AN_OBJECT),
        (b'"exposure"', RejectReason.NOT_AN_OBJECT),
        (orjson.dumps(event(type="click")), RejectReason.UNKNOWN_TYPE),
        (orjson.dumps(event(type=...)), RejectReason.UNKNOWN_TYPE),
        (orjson.dumps(event(v=2)), RejectReason.UNSUPPORTED_VERSION),
        (orjson.dumps(event(v="1")), RejectReason.UNSUPPORTED_VERSION),
        (orjson.dumps(event(v=...)), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(extra=1)), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(flag="has space")), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(flag="")), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(unit="u" * 257)), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(arm="both")), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(error="true")), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(latency_ms=-1)), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(latency_ms="5")), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(flag_version=-1)), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(ts="123")), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(ts="2026-11-22T10:00:00")), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(ts=1.5)), RejectReason.SCHEMA_VIOLATION),
        (orjson.dumps(event(id=...)), RejectReason.SCHEMA_VIOLATION),
    ],
)
def test_bad_input_is_rejected_with_its_reason(raw: bytes | None, reason: RejectReason) -> None:
    result = decode_event(raw, max_bytes=MAX)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert result.detail


# Values for each field: valid ones mixed with the invalid ones a producer gets wrong.
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(["exposure", "request", "conversion", "click", None, 1]),
    "v": st.sampled_from([1, 1, 1, 2, 0, "1", 1.0, True, None]),
    "id": st.one_of(st.text(min_size=0, max_size=130), st.integers(min_value=0, max_value=9)),
    "ts": st.one_of(
        st.integers(min_value=-5, max_value=300_000_000_000_000),
        st.sampled_from(
            ["2026-01-01T00:00:00Z", "2026-01-01 00:00:00+02:00", "2026-01-01T00:00:00", "123"]
        ),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    "flag": st.one_of(
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,130}", fullmatch=True), st.text()
    ),
    "unit": st.text(min_size=0, max_size=260),
    "arm": st.sampled_from(["treatment", "control", "Treatment", "both", 0]),
    "flag_version": st.one_of(st.integers(min_value=-3, max_value=2**32), st.just("3")),
    "error": st.sampled_from([True, False, 0, 1, "true", None]),
    "latency_ms": st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.just("5"),
        st.none(),
    ),
    "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.none(), st.just("x")),
    "failure": st.one_of(
        st.text(max_size=260), st.none(), st.just("5xx GET /cart/{id}"), st.just(5)
    ),
    "extra": st.integers(min_value=-(2**63), max_value=2**63 - 1),
}


@st.composite
def candidate_events(draw: st.DrawFn) -> dict[str, Any]:
    present = draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), min_size=6))
    required = {"type", "v", "id", "ts", "flag", "unit", "arm", "flag_version"}
    fields = present | (required if draw(st.booleans()) else set())
    return {name: draw(FIELD_VALUES[name]) for name in sorted(fields)}


def _comparable(obj: Any) -> dict[str, Any]:
    keys = ("flag", "unit", "arm", "flag_version", "error", "latency_ms", "value", "failure")
    return {k: str(getattr(obj, k)) for k in keys if hasattr(obj, k)}


@settings(max_examples=3000, deadline=None)
@given(candidate_events())
def test_fast_decoder_accepts_exactly_what_the_contract_accepts(candidate: dict[str, Any]) -> None:
    raw = orjson.dumps(candidate)
    fast = decode_event(raw, max_bytes=1 << 20)
    try:
        model = event_adapter.validate_json(raw)
    except ValidationError:
        assert isinstance(fast, Rejection), f"ingest counts what the contract refuses: {candidate}"
        return
    assert not isinstance(fast, Rejection), f"ingest refuses a valid event: {candidate} {fast}"
    assert _comparable(fast) == _comparable(model)


def test_stream_decoder_checks_every_distinct_flag_and_bounds_its_memory() -> None:
    decoder = EventDecoder(max_bytes=MAX, max_remembered_flags=2)
    for flag in ("a", "b", "c", "a"):
        assert isinstance(decoder.decode(orjson.dumps(event(flag=flag))), RequestIn)
    for bad in ("-starts-with-dash", "has space", "a/b"):
        result = decoder.decode(orjson.dumps(event(flag=bad)))
        assert isinstance(result, Rejection)
        assert result.reason is RejectReason.SCHEMA_VIOLATION
        assert "flag" in result.detail


def request_text(**raw_values: bytes) -> bytes:
    """A valid request event as JSON text, with some values given as raw text."""
    fields = {k: orjson.dumps(v) for k, v in event().items()}
    fields.update(raw_values)
    return b"{" + b",".join(orjson.dumps(k) + b":" + v for k, v in fields.items()) + b"}"


def refused_by_both(raw: bytes) -> Rejection:
    """The decoder's rejection of ``raw``, after checking the contract refuses it too."""
    with pytest.raises(ValidationError):
        event_adapter.validate_json(raw)
    result = decode_event(raw, max_bytes=1 << 20)
    assert isinstance(result, Rejection), result
    return result


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"])
@pytest.mark.parametrize("field", ["unit", "id", "flag"])
def test_invalid_utf8_inside_a_string_is_malformed_json(field: str, bad: bytes) -> None:
    raw = request_text(**{field: b'"x' + bad + b'"'})
    assert refused_by_both(raw).reason is RejectReason.MALFORMED_JSON


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, RejectReason.SCHEMA_VIOLATION),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, RejectReason.SCHEMA_VIOLATION),
        (b'{"a":' * 10_000, RejectReason.SCHEMA_VIOLATION),
        (b"[" * 1000 + b"]" * 1000, RejectReason.NOT_AN_OBJECT),
        (b" [" * 10_000, RejectReason.NOT_AN_OBJECT),
        (b"1" + b"[" * 100, RejectReason.MALFORMED_JSON),
        (request_text(extra=b"[" * 1000 + b"]" * 1000), RejectReason.SCHEMA_VIOLATION),
        (
            b'{"x":' + b"[" * 1000 + b"]" * 1000 + b',"type":"request"}',
            RejectReason.SCHEMA_VIOLATION,
        ),
    ],
)
def test_deep_nesting_is_refused_without_recursing(raw: bytes, reason: RejectReason) -> None:
    result = decode_event(raw, max_bytes=1 << 20)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert f"deeper than {MAX_NESTING}" in result.detail


@pytest.mark.parametrize(
    ("raw", "deeper_than_2"),
    [
        (b"[[]]", False),
        (b"[[[]]]", True),
        (b'{"a":{"b":{"c":1}}}', True),
        (b'{"a":"[[[[[[","b":"{{{{"}', False),
        (b'{"a":"\\"[[[[","b":1}', False),
        (b'["\\\\", [[1]]]', True),
        (b'["\\\\"[[[[', True),
        (b'"unterminated [[[[', False),
        (b"]]]][[", False),
    ],
)
def test_nesting_scan_counts_brackets_outside_strings(raw: bytes, deeper_than_2: bool) -> None:
    assert nesting_exceeds(raw, 2) is deeper_than_2


@pytest.mark.parametrize(
    "raw",
    [
        request_text(latency_ms=b"1.7e308"),
        request_text(latency_ms=b"1e200"),
        request_text(latency_ms=b"86400000.5"),
        request_text(latency_ms=b"86400001"),
        orjson.dumps(event(type="conversion", error=..., latency_ms=..., value=1e200)),
        orjson.dumps(event(type="conversion", error=..., latency_ms=..., value=-1e200)),
        orjson.dumps(event(type="conversion", error=..., latency_ms=..., value=1.7e308)),
        orjson.dumps(event(type="conversion", error=..., latency_ms=..., value=1_000_000_001)),
    ],
)
def test_numbers_beyond_the_contract_limits_are_refused(raw: bytes) -> None:
    result = refused_by_both(raw)
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert "less than or equal" in result.detail or "greater than or equal" in result.detail


@pytest.mark.parametrize(
    "raw",
    [
        request_text(latency_ms=str(MAX_LATENCY_MS).encode()),
        orjson.dumps(
            event(type="conversion", error=..., latency_ms=..., value=MAX_CONVERSION_VALUE)
        ),
        orjson.dumps(
            event(type="conversion", error=..., latency_ms=..., value=-MAX_CONVERSION_VALUE)
        ),
    ],
)
def test_numbers_at_the_limits_are_counted(raw: bytes) -> None:
    event_adapter.validate_json(raw)
    assert not isinstance(decode_event(raw, max_bytes=MAX), Rejection)


def test_the_json_schema_publishes_the_number_limits() -> None:
    defs = json_schemas()["event"]["$defs"]
    latency = defs["RequestOutcome"]["properties"]["latency_ms"]["anyOf"][0]
    value = defs["Conversion"]["properties"]["value"]["anyOf"][0]
    assert (latency["minimum"], latency["maximum"]) == (0, MAX_LATENCY_MS)
    assert (value["minimum"], value["maximum"]) == (-MAX_CONVERSION_VALUE, MAX_CONVERSION_VALUE)


@pytest.mark.parametrize("flag", ["trail\n", "trail\r\n", "\ntrail", "a\nb", "trail\u2028"])
def test_a_flag_key_with_a_newline_is_refused_like_the_contract_does(flag: str) -> None:
    decoder = EventDecoder(max_bytes=MAX)
    result = decoder.decode(orjson.dumps(event(flag=flag)))
    assert isinstance(result, Rejection)
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert "flag" in result.detail
    refused_by_both(orjson.dumps(event(flag=flag)))


@pytest.mark.parametrize(
    ("raw", "flag_version"),
    [
        (request_text(flag_version=b'-1,"flag_version":4'), 4),
        (request_text(flag_version=b'"x","flag_version":4'), 4),
        (request_text(flag_version=b'1e400,"flag_version":4'), 4),
        (request_text(flag_version=b'1,"flag_version":4'), 4),
        (b'{"type":"click",' + request_text()[1:], 3),
        (request_text(type=b'"exposure","type":"request"'), 3),
    ],
)
def test_a_repeated_key_takes_its_last_value_in_both_decoders(
    raw: bytes, flag_version: int
) -> None:
    model = event_adapter.validate_json(raw)
    result = decode_event(raw, max_bytes=MAX)
    assert isinstance(result, RequestIn), result
    assert result.flag_version == model.flag_version == flag_version


def nested(depth: int) -> bytes:
    """An object ``depth`` levels deep (counting itself)."""
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.mark.parametrize("depth", [MAX_NESTING, MAX_NESTING + 1, 100, 190])
@pytest.mark.parametrize("key", [b'"unit"', b'"\\u0075nit"'])
def test_a_deep_value_a_repeated_key_overwrites_is_read_as_the_contract_reads_it(
    depth: int, key: bytes
) -> None:
    raw = request_text(unit=nested(depth) + b"," + key + b':"user-7"')
    model = event_adapter.validate_json(raw)
    result = decode_event(raw, max_bytes=MAX)
    assert isinstance(result, RequestIn), result
    assert result.unit == model.unit == "user-7"


@pytest.mark.parametrize(
    "raw",
    [
        request_text(unit=b'"user-7","unit":' + nested(MAX_NESTING)),
        request_text(unit=nested(MAX_NESTING) + b',"unit":' + nested(MAX_NESTING)),
        request_text(unit=nested(MAX_NESTING) + b',"extra":' + nested(MAX_NESTING)),
        request_text(unit=nested(5000) + b',"unit":"user-7"'),
        request_text(unit=nested(MAX_NESTING) + b',"unit":"user-7"') + b"[[[[",
    ],
)
def test_a_deep_value_the_contract_reads_is_still_refused(raw: bytes) -> None:
    refused_by_both(raw)


@pytest.mark.parametrize(
    "raw",
    [
        request_text(flag_version=b'4,"flag_version":-1'),
        request_text(type=b'"request","type":"exposure"'),
        request_text(flag=b'"ok","flag":"trail\\n"'),
    ],
)
def test_a_repeated_key_whose_last_value_is_invalid_is_refused(raw: bytes) -> None:
    assert refused_by_both(raw).reason is RejectReason.SCHEMA_VIOLATION


@pytest.mark.parametrize("kind", [b"[]", b"{}", b'["request"]', b"1e400"])
def test_a_type_that_is_not_a_string_is_an_unknown_type(kind: bytes) -> None:
    result = refused_by_both(request_text(type=kind))
    assert result.reason in {RejectReason.UNKNOWN_TYPE, RejectReason.MALFORMED_JSON}


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-01T00:00Z",
        "2026-01-01T00:00:00,5Z",
        "9999-12-31T23:59:59.9999999Z",
        "2026-01-01T00:00:00",
        "2026-01-01",
    ],
)
def test_timestamps_ingest_cannot_read_are_refused_by_the_contract(ts: str) -> None:
    assert refused_by_both(orjson.dumps(event(ts=ts))).reason is RejectReason.SCHEMA_VIOLATION


@pytest.mark.parametrize(
    "ts", ["2026-01-01T00:00:00+0100", "2026-01-01t00:00:00.9999999z", "2026-01-01 00:00:00-00:00"]
)
def test_both_decoders_read_a_timestamp_as_the_same_instant(ts: str) -> None:
    raw = orjson.dumps(event(ts=ts))
    model = event_adapter.validate_json(raw)
    result = decode_event(raw, max_bytes=MAX)
    assert isinstance(result, RequestIn)
    assert result.ts == model.ts


@pytest.mark.parametrize(
    ("fields", "failure"),
    [
        ({"error": True, "failure": "5xx GET /cart/{id}"}, "5xx GET /cart/{id}"),
        ({"error": True, "failure": None}, None),
        ({"error": True}, None),
        ({"error": True, "failure": "é" * 256}, "é" * 256),
        # read on a failed request alone; on another it is still held to its bounds
        ({"error": False, "failure": "5xx GET /cart/{id}"}, "5xx GET /cart/{id}"),
    ],
)
def test_a_request_may_name_its_failure(fields: dict[str, Any], failure: str | None) -> None:
    raw = orjson.dumps(event(**fields))
    model = event_adapter.validate_json(raw)
    found = decode_event(raw, max_bytes=MAX)
    assert isinstance(found, RequestIn)
    assert found.failure == getattr(model, "failure", "missing") == failure


@pytest.mark.parametrize(
    "failure",
    ["", "é" * 257, 5, True, ["5xx"], {"name": "5xx"}],
)
def test_a_request_failure_out_of_its_bounds_is_refused_by_both(failure: object) -> None:
    result = refused_by_both(orjson.dumps(event(error=True, failure=failure)))
    assert result.reason is RejectReason.SCHEMA_VIOLATION
    assert "failure" in result.detail


def test_an_example_is_no_request_field() -> None:
    raw = orjson.dumps(event(error=True, failure="5xx GET /cart/{id}", example="boom"))
    assert refused_by_both(raw).reason is RejectReason.SCHEMA_VIOLATION
