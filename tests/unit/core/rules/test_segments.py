"""Segments as data: packing id lists into parts, checking them, and the wire models."""

from __future__ import annotations

import base64
import gzip
import hashlib
from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.rules.segments import (
    MAX_PART_BYTES,
    assemble,
    canonical,
    pack,
    rule_problem,
    unpack,
)
from controller.core.rules.text import parse
from controller.core.wire.segment_messages import SegmentCommand, SegmentRecord, signed_bytes


def _gzip(data: bytes) -> bytes:
    """Gzip without a timestamp: the same bytes, hence the same test ids, in every process
    (pytest-xdist's workers must collect identical ids)."""
    return gzip.compress(data, mtime=0)


def _gz(text: bytes) -> str:
    return base64.b64encode(_gzip(text)).decode()


def _hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def test_a_list_packs_into_parts_and_assembles_back() -> None:
    ids = [f"user-{i:07d}-{'x' * (i % 40)}" for i in range(100_000)]
    packed = pack(reversed(ids + ids[:10]))  # any order, duplicates
    assert packed.count == 100_000
    assert len(packed.parts) > 1
    assert all(len(base64.b64decode(p)) < MAX_PART_BYTES for p in packed.parts)
    assert packed.sha256 == _hash(sorted(ids))
    assert assemble(list(packed.parts), count=packed.count, sha256=packed.sha256) == set(ids)


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ([""], "1 to 256 characters"),
        (["x" * 257], "1 to 256 characters"),
        (["a\nb"], "no line break"),
        (["\ud800"], "valid Unicode"),
    ],
)
def test_bad_ids_are_refused_by_number(ids: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        canonical(["fine", *ids])


BOMB = base64.b64encode(_gzip(b"a" * (MAX_PART_BYTES * 64))).decode()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("not base64!", "not base64 of gzip"),
        (base64.b64encode(b"plain text").decode(), "not base64 of gzip"),
        (BOMB, "inflates past"),
        (_gz(b"a\n\nb"), "1 to 256 characters"),
        (_gz(b"\xff\xfe"), "not UTF-8"),
        (base64.b64encode(_gzip(b"a") + _gzip(b"b")).decode(), "one whole gzip"),
        (base64.b64encode(_gzip(b"a")[:-4]).decode(), "one whole gzip"),
        ("A" * 200_001, "at most 200000"),
    ],
)
def test_hostile_parts_are_refused_with_a_reason(data: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        unpack(data)


def test_a_zip_bomb_costs_no_more_than_one_part() -> None:
    assert len(BOMB) < 20_000  # 8 MiB of text in a small part
    with pytest.raises(ValueError, match="inflates past"):
        unpack(BOMB)


@pytest.mark.parametrize(
    ("parts", "count", "sha", "problem"),
    [
        ([_gz(b"b\na")], 2, _hash(["b", "a"]), "not sorted"),
        ([_gz(b"a\na")], 2, _hash(["a", "a"]), "not sorted"),
        ([_gz(b"a\nb"), _gz(b"b\nc")], 4, _hash(["a", "b", "b", "c"]), "not sorted"),
        ([_gz(b"a\nb")], 3, _hash(["a", "b"]), "hold 2 ids, the list says 3"),
        ([_gz(b"a\nb")], 2, _hash(["a", "c"]), "do not hash"),
        ([], 0, _hash([]), "1 to 512 parts"),
        ([_gz(b"a"), "%%%"], 2, _hash(["a", "b"]), "part 1:"),
    ],
)
def test_lists_that_do_not_add_up_are_refused(
    parts: list[str], count: int, sha: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        assemble(parts, count=count, sha256=sha)


ENVELOPE: dict[str, Any] = {"type": "segment_command", "v": 1, "id": "c1", "ts": 0}
PART = {"upload": "u", "part": 0, "parts": 1, "count": 1, "sha256": "0" * 64, "data": _gz(b"a")}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"action": "put"}, "a rule or ids, one of them"),
        ({"action": "put", "rule": {"attribute": "a", "op": "==", "value": 1}, "ids": PART}, "one"),
        ({"action": "delete", "ids": PART}, "neither"),
        ({"action": "put", "ids": PART | {"part": 1}}, "part 1 of 1"),
        (
            {"action": "put", "rule": {"attribute": "u", "op": "in", "value": {"segment": "b"}}},
            "cannot name a segment",
        ),
        ({"action": "put", "ids": PART | {"count": 1_000_001}}, "less than or equal"),
        ({"action": "delete", "segment": "x" * 121}, "at most 120"),
        ({"action": "delete", "segment": "bad name"}, "pattern"),
    ],
)
def test_segment_commands_that_break_the_contract_are_refused(
    fields: dict[str, Any], problem: str
) -> None:
    command = ENVELOPE | {"segment": "beta", "actor": "ana"} | fields
    with pytest.raises(ValidationError, match=problem):
        SegmentCommand.model_validate(command)


def test_a_segment_rule_may_not_name_a_segment() -> None:
    assert rule_problem(parse('plan == "pro"')) is None
    assert "'beta'" in (rule_problem(parse('plan == "pro" or u in segment("beta")')) or "")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"rule": {"attribute": "a", "op": "==", "value": 1}, "count": 3},
        {"count": 3, "sha256": "0" * 64},
    ],
)
def test_a_record_is_a_rule_or_a_whole_list(fields: dict[str, Any]) -> None:
    base = {"type": "segment", "v": 1, "id": "r", "ts": 0, "name": "beta", "version": 1}
    with pytest.raises(ValidationError, match="a rule, or count"):
        SegmentRecord.model_validate(base | fields)


def test_the_signed_form_covers_the_rule_as_sorted_json() -> None:
    rule = {"op": "==", "attribute": "plan", "value": "pro"}
    record = {"name": "beta", "version": 2, "rule": rule}
    assert signed_bytes(record, "k1") == (
        b'["rollout-controller/segment/1","k1","beta",2,'
        b'"{\\"attribute\\":\\"plan\\",\\"op\\":\\"==\\",\\"value\\":\\"pro\\"}",null,null,null]'
    )
