"""Fuzzing the event decoder with hostile bytes.

Two properties over 20,000 inputs that mix random bytes, invalid UTF-8, deep
nesting, huge, extreme and non-finite numbers, repeated keys, unicode and
control characters in flag keys, and valid events mutated one field or one
byte at a time:

* nothing escapes :meth:`EventDecoder.decode`, and its last line of defence
  (a rejection for an unexpected exception) is never reached;
* the decoder counts exactly the events the pydantic contract accepts (after
  the same size bound), with the same values. The nesting bound needs no
  mirror here: it holds for the values the contract reads, and an event the
  contract accepts is a flat object, so a deep value it overwrote with a
  repeated key refuses it in neither.

The commands and monitors topics go through pydantic alone; the same hostile
text must only ever make their models raise ``ValidationError``.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.core.trust import signing
from controller.core.wire.decoding import (
    MAX_NESTING,
    UNEXPECTED_DETAIL,
    EventDecoder,
    Rejection,
)
from controller.core.wire.messages import Command, MonitorAlert, event_adapter
from tests.unit.core.wire.test_decoding import event as valid_request

MAX_BYTES = 65_536
FUZZ = settings(
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# One decoder for the whole run, remembering few flags, so that the flag cache
# and its reset are fuzzed too.
DECODER = EventDecoder(max_bytes=MAX_BYTES, max_remembered_flags=8)

Field = tuple[bytes, bytes]
"""One member of a JSON object as text: the key with its quotes, and the value."""


def text(value: Any) -> bytes:
    return orjson.dumps(value)


VALID_FIELDS: dict[str, list[Field]] = {
    kind: [(text(k), text(v)) for k, v in body.items()]
    for kind, body in {
        "request": valid_request(),
        "conversion": {
            "type": "conversion",
            "v": 1,
            "id": "e-2",
            "ts": "2026-01-31T12:00:00.250+01:00",
            "flag": "search:rank_v7",
            "unit": "u",
            "arm": "control",
            "flag_version": 0,
            "value": 9.99,
        },
        "crash": {
            "type": "crash",
            "v": 1,
            "id": "e-4",
            "ts": 1,
            "flag": "f",
            "unit": "device-1",
            "arm": "treatment",
            "flag_version": 3,
        },
        "exception": {
            "type": "exception",
            "v": 1,
            "id": "e-5",
            "ts": "2026-01-31T12:00:00Z",
            "flag": "f",
            "unit": "u",
            "arm": "control",
            "flag_version": 1,
            "cohort": "carried",
        },
        "exposure": {
            "type": "exposure",
            "v": 1,
            "id": "e-3",
            "ts": 0,
            "flag": "F",
            "unit": "session-9",
            "arm": "control",
            "flag_version": 2_147_483_647,
        },
    }.items()
}

NUMBERS = st.sampled_from(
    [
        b"0",
        b"-0",
        b"-0.0",
        b"1",
        b"1.0",
        b"1e0",
        b"86400000",
        b"86400000.000001",
        b"86400001",
        b"1000000000",
        b"1e9",
        b"-1e9",
        b"1000000000.0000002",
        b"-1000000001",
        b"1e200",
        b"-1e200",
        b"1.7e308",
        b"1.8e308",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"5e-324",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"nan",
        b"2147483647",
        b"2147483648",
        b"253402300799999",
        b"253402300800000",
        b"9223372036854775807",
        b"18446744073709551616",
        b"9" * 400,
        b"-" + b"9" * 5000,
        b"01",
        b"1.",
        b".5",
        b"+1",
        b"0x10",
    ]
)
FLAG_TEXTS = st.one_of(
    st.sampled_from(
        [
            "trail\n",
            "trail\r\n",
            "\nlead",
            "a\x00b",
            "a\u2028",
            "a b",
            "-dash",
            "a/b",
            "flag\u0301",
            "\ufb02ag",
            "\uff21",
            "\u0661\u0662",
            "a" * 128,
            "a" * 129,
            "",
        ]
    ),
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,130}", fullmatch=True),
)
TIMESTAMPS = st.one_of(
    st.sampled_from(
        [
            "2026-01-01T00:00:00Z",
            "2026-01-01t00:00:00z",
            "2026-01-01 00:00:00+02:00",
            "2026-01-01T00:00Z",
            "2026-01-01T00:00:00,5Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890123Z",
            "2026-01-01T24:00:00Z",
            "2026-12-31T23:59:60Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+01",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
            "\uff12026-01-01T00:00:00Z",
            "123",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=40),
).map(lambda v: text(v) if not (isinstance(v, float) and not math.isfinite(v)) else b"null")
INVALID_UTF8 = st.sampled_from(
    [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80"]
)


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """Nesting from just under the bound to far past it, closed or not."""
    depth = draw(st.one_of(st.integers(1, MAX_NESTING + 2), st.integers(1, 12_000)))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")]))
    inner = draw(st.sampled_from([b"1", b"[]", b"{}", b'"x"']))
    tail = closer * depth if draw(st.booleans()) else b""
    return opener * depth + inner + tail


def field_values(name: str) -> st.SearchStrategy[bytes]:
    """Replacement values for one field: near misses, hostile numbers, any JSON."""
    special: dict[str, st.SearchStrategy[bytes]] = {
        "flag": FLAG_TEXTS.map(text),
        "ts": TIMESTAMPS.map(text),
        "type": st.sampled_from(
            ["exposure", "request", "conversion", "crash", "exception", "click", "Crash"]
        ).map(text),
        "arm": st.sampled_from(["treatment", "control", "Control", "both"]).map(text),
    }
    return st.one_of(special.get(name, st.nothing()), NUMBERS, JSON_SCALARS, deep())


@st.composite
def mutated_event(draw: st.DrawFn) -> list[Field]:
    """A valid event with one field replaced, removed, repeated or added."""
    fields = list(draw(st.sampled_from(sorted(VALID_FIELDS.items())))[1])
    index = draw(st.integers(0, len(fields) - 1))
    key, _ = fields[index]
    name = orjson.loads(key)
    action = draw(st.sampled_from(["replace", "remove", "repeat_before", "repeat_after", "add"]))
    if action == "remove":
        del fields[index]
    elif action == "add":
        extra = draw(
            st.sampled_from(["value", "latency_ms", "error", "failure", "extra", "Type", "v "])
        )
        fields.insert(draw(st.integers(0, len(fields))), (text(extra), draw(field_values(extra))))
    else:
        value = draw(field_values(name))
        if action == "replace":
            fields[index] = (key, value)
        else:
            fields.insert(index + (action == "repeat_after"), (key, value))
    return fields


def render(fields: list[Field]) -> bytes:
    return b"{" + b",".join(k + b":" + v for k, v in fields) + b"}"


@st.composite
def byte_mutation(draw: st.DrawFn) -> bytes:
    """A valid event with bytes flipped, inserted or cut, including invalid UTF-8."""
    raw = bytearray(render(draw(st.sampled_from(sorted(VALID_FIELDS.items())))[1]))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(raw)))
        choice = draw(st.sampled_from(["insert", "replace", "cut"]))
        if choice == "cut":
            del raw[at : at + draw(st.integers(1, 8))]
            continue
        piece = draw(st.one_of(INVALID_UTF8, st.binary(min_size=1, max_size=4)))
        end = at + (len(piece) if choice == "replace" else 0)
        raw[at:end] = piece
    return bytes(raw)


@st.composite
def invalid_utf8_in_string(draw: st.DrawFn) -> bytes:
    fields = list(draw(st.sampled_from(sorted(VALID_FIELDS.items())))[1])
    strings = [i for i, (_, v) in enumerate(fields) if v.startswith(b'"')]
    index = draw(st.sampled_from(strings))
    key, value = fields[index]
    fields[index] = (key, value[:-1] + draw(INVALID_UTF8) + b'"')
    return render(fields)


HOSTILE = st.one_of(
    st.binary(max_size=300),
    mutated_event().map(render),
    mutated_event().map(render),
    mutated_event().map(render),
    byte_mutation(),
    invalid_utf8_in_string(),
    deep(),
    st.builds(
        lambda fields, d: render([*fields, (b'"x"', d)]),
        st.sampled_from(sorted(VALID_FIELDS.items())).map(lambda kv: kv[1]),
        deep(),
    ),
)


def contract_accepts(raw: bytes) -> Any:
    """The contract's reading of ``raw`` behind the same size bound, or None."""
    if not raw or len(raw) > MAX_BYTES:
        return None
    try:
        return event_adapter.validate_json(raw)
    except ValidationError:
        return None


def same_values(fast: Any, model: Any) -> bool:
    keys = ("id", "flag", "unit", "arm", "flag_version", "error", "latency_ms", "value")
    if fast.ts != model.ts or (
        isinstance(fast.ts, datetime) and fast.ts.utcoffset() != model.ts.utcoffset()
    ):
        return False
    return all(str(getattr(fast, k, None)) == str(getattr(model, k, None)) for k in keys)


@pytest.mark.timeout(900)  # 20,000 examples: about 60 s of CPU, several minutes on a busy machine
@FUZZ
@given(HOSTILE)
def test_nothing_escapes_and_the_decoder_agrees_with_the_contract(raw: bytes) -> None:
    result = DECODER.decode(raw)
    model = contract_accepts(raw)
    event(result.reason.value if isinstance(result, Rejection) else "counted")
    if isinstance(result, Rejection):
        assert not result.detail.startswith(UNEXPECTED_DETAIL), (raw, result)
        assert model is None, f"ingest refuses what the contract accepts: {raw!r} {result}"
        return
    assert model is not None, f"ingest counts what the contract refuses: {raw!r} {result}"
    assert same_values(result, model), (raw, result, model)


def command_text(plan: bytes, ts: bytes) -> bytes:
    return render(
        [
            (b'"type"', b'"command"'),
            (b'"v"', b"1"),
            (b'"id"', b'"c-1"'),
            (b'"ts"', ts),
            (b'"action"', b'"start"'),
            (b'"flag"', b'"f"'),
            (b'"actor"', b'"a"'),
            (b'"plan"', plan),
        ]
    )


COMMANDS = st.one_of(
    st.builds(
        command_text,
        st.one_of(deep(), NUMBERS, JSON_SCALARS, st.just(b'{"stages":[{"percent":5}]}')),
        st.one_of(TIMESTAMPS.map(text), NUMBERS),
    ),
    byte_mutation(),
    st.binary(max_size=200),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(COMMANDS)
def test_commands_and_monitor_alerts_only_fail_validation(raw: bytes) -> None:
    # As the engine reads them: a monitor alert straight from JSON; a command
    # parsed by orjson, validated, and then encoded again to check its signature.
    with contextlib.suppress(ValidationError):
        MonitorAlert.model_validate_json(raw)
    try:
        obj = orjson.loads(raw)
        if isinstance(obj, dict):
            Command.model_validate(obj)
            signing.canonical_bytes(obj)
    except (ValidationError, orjson.JSONDecodeError):
        pass
