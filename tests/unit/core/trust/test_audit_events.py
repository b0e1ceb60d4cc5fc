"""Audit records: what a published record becomes, the export's order, and copies dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from controller.core.trust import (
    AuditEvent,
    Dedup,
    PublishedRecord,
    RecordRefused,
    audit_event,
    audit_line,
    export_order,
)

SCHEMA = Path(__file__).resolve().parents[4] / "schemas" / "audit-event.schema.json"
DECISION = {
    "type": "decision",
    "v": 1,
    "id": "d-1",
    "ts": 1767225600000,
    "flag": "checkout.new-flow",
    "kind": "command",
    "action": "approve",
    "outcome": "applied",
    "evidence": {"operator": "ana", "key_id": "ops-1"},
}


def _record(
    value: bytes | None,
    *,
    kind: str = "decision",
    offset: int = 7,
    ts: int = 1767225600500,
    key: bytes | None = b"checkout.new-flow",
    topic: str = "rollout.decisions",
    partition: int = 0,
) -> PublishedRecord:
    return PublishedRecord(kind, topic, partition, offset, ts, key, value)  # type: ignore[arg-type]


def _event(record: PublishedRecord) -> AuditEvent:
    event = audit_event(record)
    assert isinstance(event, AuditEvent), event
    return event


@pytest.mark.parametrize(
    ("record", "id_", "type_", "subject"),
    [
        (_record(json.dumps(DECISION).encode()), "d-1", "decision", "checkout.new-flow"),
        (
            _record(b'{"type":"alert","id":"a-9","flag":null}', kind="alert", key=b"k"),
            "a-9",
            "alert",
            "k",
        ),
        (
            _record(b'{"type":"segment","id":"s-1","name":"beta"}', kind="segment", key=None),
            "s-1",
            "segment",
            None,
        ),
        (
            _record(b'{"no":"id"}', kind="command", offset=3),
            "rollout.decisions/0/3",
            "command",
            "checkout.new-flow",
        ),
        (
            _record(b'{"id":""}', kind="command"),
            "rollout.decisions/0/7",
            "command",
            "checkout.new-flow",
        ),
        (_record(b'{"id":12}', kind="monitor", key=b""), "rollout.decisions/0/7", "monitor", None),
        (
            _record(json.dumps({"id": "x" * 129}).encode()),
            "rollout.decisions/0/7",
            "decision",
            "checkout.new-flow",
        ),
    ],
)
def test_a_record_becomes_an_event_named_by_its_id_or_its_coordinates(
    record: PublishedRecord, id_: str, type_: str, subject: str | None
) -> None:
    event = _event(record)
    assert (event.id, event.type, event.subject) == (
        id_,
        f"dev.rollout-controller.{type_}",
        subject,
    )
    assert event.source == "/rollout-controller/topics/rollout.decisions"
    assert event.data == json.loads(record.value or b"")


def test_the_line_carries_the_record_as_published_and_validates_against_the_schema() -> None:
    line = audit_line(_event(_record(json.dumps(DECISION).encode())))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    parsed = json.loads(line)
    validator.validate(parsed)
    assert "\n" not in line
    assert parsed["data"] == DECISION
    assert parsed["time"] == "2026-01-01T00:00:00.500000Z"
    assert parsed["specversion"] == "1.0"
    assert parsed["datacontenttype"] == "application/json"
    assert (parsed["kafkatopic"], parsed["kafkapartition"], parsed["kafkaoffset"]) == (
        "rollout.decisions",
        0,
        7,
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty record"),
        (b"", "empty record"),
        (b"{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"x": NaN}', "not JSON"),
        (b'{"x": 1e400}', "not JSON"),
        (b'{"x": "\\ud800"}', "not JSON"),
        (b"[1, 2]", "not a JSON object but list"),
        (b'"text"', "not a JSON object but str"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"x":"' + b"a" * 1_048_576 + b'"}', "over 1048576"),
    ],
)
def test_a_record_that_is_no_json_object_is_refused_with_a_reason(
    value: bytes | None, reason: str
) -> None:
    refused = audit_event(_record(value))
    assert isinstance(refused, RecordRefused)
    assert reason in refused.reason
    assert refused.where == "rollout.decisions/0/7"


@pytest.mark.parametrize(
    ("kind", "value", "tombstone"),
    [("segment", None, True), ("segment", b"", False), ("decision", None, False)],
)
def test_only_a_segment_with_no_value_is_a_tombstone(
    kind: str, value: bytes | None, tombstone: bool
) -> None:
    refused = audit_event(_record(value, kind=kind))
    assert isinstance(refused, RecordRefused)
    assert refused.tombstone is tombstone


def test_an_integer_past_64_bits_keeps_its_digits() -> None:
    event = _event(_record(b'{"id":"d","n":123456789012345678901234567890,"m":1.5}'))
    assert event.data == {"id": "d", "n": 123456789012345678901234567890, "m": 1.5}
    assert '"n":123456789012345678901234567890' in audit_line(event)


def test_a_timestamp_out_of_range_is_refused_not_raised() -> None:
    refused = audit_event(_record(b"{}", ts=2**62))
    assert isinstance(refused, RecordRefused)
    assert "out of range" in refused.reason


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([("b", 0, 1, 20), ("a", 0, 1, 10)], [("a", 0, 1, 10), ("b", 0, 1, 20)]),
        (
            [("b", 0, 1, 10), ("a", 1, 5, 10), ("a", 0, 9, 10)],
            [("a", 0, 9, 10), ("a", 1, 5, 10), ("b", 0, 1, 10)],
        ),
        ([("a", 0, 2, 10), ("a", 0, 1, 10)], [("a", 0, 1, 10), ("a", 0, 2, 10)]),
    ],
)
def test_the_export_is_ordered_by_time_then_topic_partition_offset(
    records: list[tuple[str, int, int, int]], expected: list[tuple[str, int, int, int]]
) -> None:
    built = [_record(b"{}", topic=t, partition=p, offset=o, ts=ts) for t, p, o, ts in records]
    ordered = sorted(built, key=export_order)
    assert [(r.topic, r.partition, r.offset, r.timestamp_ms) for r in ordered] == expected


def test_a_copy_published_again_is_exported_once_and_another_record_under_its_id_is_kept() -> None:
    dedup = Dedup()
    first = _event(_record(json.dumps(DECISION).encode(), offset=1))
    copy = _event(_record(json.dumps(DECISION, indent=2).encode(), offset=2))
    other = _event(_record(json.dumps({**DECISION, "outcome": "rejected"}).encode(), offset=3))
    elsewhere = _event(_record(json.dumps(DECISION).encode(), topic="rollout.alerts", offset=4))
    admitted = [dedup.admit(e) for e in (first, copy, other, elsewhere)]
    assert admitted[0] == first
    assert admitted[1] is None
    assert admitted[2] is not None
    assert admitted[2].id == "d-1@rollout.decisions/0/3"
    assert admitted[3] == elsewhere
    assert (dedup.copies, dedup.reused_ids) == (1, 1)
    assert dedup.admit(other) is None
    assert dedup.copies == 2
