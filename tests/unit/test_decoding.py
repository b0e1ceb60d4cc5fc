"""Decoding: every reject reason, and the fast decoder equals the contract."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.core.decoding import (
    ConversionIn,
    EventDecoder,
    ExposureIn,
    Rejection,
    RejectReason,
    RequestIn,
    decode_event,
)
from controller.core.messages import event_adapter

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
    "extra": st.integers(min_value=-(2**63), max_value=2**63 - 1),
}


@st.composite
def candidate_events(draw: st.DrawFn) -> dict[str, Any]:
    present = draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), min_size=6))
    required = {"type", "v", "id", "ts", "flag", "unit", "arm", "flag_version"}
    fields = present | (required if draw(st.booleans()) else set())
    return {name: draw(FIELD_VALUES[name]) for name in sorted(fields)}


def _comparable(obj: Any) -> dict[str, Any]:
    keys = ("flag", "unit", "arm", "flag_version", "error", "latency_ms", "value")
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
