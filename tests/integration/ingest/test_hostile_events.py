"""Hostile events through the real daemon: contained to themselves, never a crash.

Each poison sits between valid events on a real broker. The daemon must stay
up, count every valid event exactly once in the real Redis, and dead-letter
each poison with its reason.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.rig import Rig, flags_of
from tests.support.reference import encode, make_event

pytestmark = pytest.mark.integration


def _with(event: dict[str, Any], **raw_values: bytes) -> bytes:
    """``event`` as JSON text, with some values replaced by raw text."""
    fields = {k: orjson.dumps(v) for k, v in event.items()}
    fields.update(raw_values)
    return b"{" + b",".join(orjson.dumps(k) + b":" + v for k, v in fields.items()) + b"}"


REQUEST = {
    "type": "request",
    "v": 1,
    "id": "poison",
    "ts": 1_763_780_000_000,
    "flag": "flag-0",
    "unit": "u1",
    "arm": "control",
    "flag_version": 1,
    "error": False,
}
CONVERSION = {**{k: v for k, v in REQUEST.items() if k != "error"}, "type": "conversion"}

POISONS: list[tuple[str, bytes, str, str]] = [
    # (finding, value, DLQ reason, words in the detail)
    ("1", _with(REQUEST, unit=b'"u\xff1"'), "malformed_json", "UTF-8"),
    ("1", _with(REQUEST, flag=b'"flag-\xed\xa0\x80"'), "malformed_json", "UTF-8"),
    ("2", b'{"a":' * 1000 + b"1" + b"}" * 1000, "schema_violation", "deeper than"),
    ("2", b"[" * 10_000 + b"]" * 10_000, "not_an_object", "deeper than"),
    ("2", _with(REQUEST, x=b"[" * 1000 + b"]" * 1000), "schema_violation", "deeper than"),
    ("3", _with(CONVERSION, value=b"1e200"), "schema_violation", "value"),
    ("3", _with(CONVERSION, value=b"1.7e308"), "schema_violation", "value"),
    ("3", _with(REQUEST, latency_ms=b"1.7e308"), "schema_violation", "latency_ms"),
    ("3", _with(REQUEST, latency_ms=b"1e200"), "schema_violation", "latency_ms"),
    ("5", _with(REQUEST, flag=b'"trail\\n"'), "schema_violation", "flag"),
    ("-", _with(REQUEST, type=b"[]"), "unknown_type", "type"),
]


def _repeated_key(event: dict[str, Any]) -> bytes:
    """A valid event whose flag_version comes first as an invalid value, then valid."""
    good = orjson.dumps(event["flag_version"])
    return _with(event, flag_version=b'-1,"flag_version":' + good)


async def test_poison_events_are_dead_lettered_and_the_rest_counted_exactly(
    rig: Rig, tmp_path: Path
) -> None:
    rng = random.Random(11)
    good = [make_event(rng, i) for i in range(1500)]
    stream: list[tuple[bytes | None, bytes | None]] = [
        (e["unit"].encode(), _repeated_key(e) if i % 50 == 0 else encode(e))
        for i, e in enumerate(good)
    ]
    for index, (_, value, _, _) in enumerate(POISONS):
        stream.insert(rng.randrange(1, len(stream)), (f"bad-{index}".encode(), value))
    with rig.daemon(tmp_path) as daemon:
        await rig.produce(stream)
        assert await rig.wait_counted(flags_of(good), len(good)) == len(good)
        letters = await rig.dead_letters(len(POISONS))
        assert daemon.running, daemon.log_text()[-2000:]
    await rig.assert_exact(good)
    by_key = {m.key: m for m in letters}
    assert len(letters) == len(by_key) == len(POISONS)
    for index, (finding, value, reason, words) in enumerate(POISONS):
        letter = by_key[f"bad-{index}".encode()]
        headers = {k: v.decode() for k, v in letter.headers}
        assert headers["rc.reason"] == reason, (finding, headers)
        assert words in headers["rc.detail"], (finding, headers)
        assert letter.value == value
