"""The SDK's segment store: whole versions only, in any order, verified, as a SegmentLookup."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controller.core.rules.matching import Audience
from controller.core.rules.segments import PackedIds, pack
from controller.core.rules.text import parse
from controller.core.trust.signing import StateSigner, generate_key
from controller.core.wire.segment_messages import SegmentRecord, signed_bytes
from controller.sdk.segments import SegmentBook

ENVELOPE: dict[str, Any] = {"v": 1, "ts": 0}


def _record(name: str, version: int, packed: PackedIds | None = None, **more: Any) -> bytes:
    body: dict[str, Any] = {"type": "segment", "id": f"{name}:v{version}", "name": name}
    body |= {"version": version} | more
    if packed is not None:
        body |= {"count": packed.count, "sha256": packed.sha256, "parts": len(packed.parts)}
    return orjson.dumps(ENVELOPE | body)


def _parts(name: str, version: int, packed: PackedIds) -> list[tuple[bytes, bytes]]:
    return [
        (
            f"{name}#{i}".encode(),
            orjson.dumps(
                ENVELOPE
                | {"type": "segment_part", "id": f"p{i}", "segment": name, "version": version}
                | {"index": i, "data": data}
            ),
        )
        for i, data in enumerate(packed.parts)
    ]


IDS = [f"user-{i:06d}-{'z' * 30}" for i in range(20_000)]
PACKED = pack(IDS)


@pytest.mark.parametrize("record_first", [True, False])
def test_a_list_is_held_once_every_part_is_in_whatever_the_order(record_first: bool) -> None:
    book = SegmentBook()
    parts = _parts("beta", 1, PACKED)
    assert len(parts) > 2
    items = [(b"beta", _record("beta", 1, PACKED)), *reversed(parts)]
    if not record_first:
        items.append(items.pop(0))
    for key, value in items[:-1]:
        book.receive(key, value)
        assert book.member("beta", IDS[0]) is None  # not whole yet: unknown
    book.receive(*items[-1])
    assert (book.version("beta"), book.size("beta")) == (1, len(IDS))
    assert book.member("beta", IDS[-1]) is True
    assert book.member("beta", "user-999999") is False
    assert book.member("gamma", IDS[0]) is None


def test_a_newer_version_replaces_the_old_only_when_whole_and_delete_forgets() -> None:
    book = SegmentBook()
    for key, value in [*_parts("beta", 1, PACKED), (b"beta", _record("beta", 1, PACKED))]:
        book.receive(key, value)
    newer = pack(IDS[:10])
    book.receive(b"beta", _record("beta", 2, newer))
    assert book.member("beta", IDS[-1]) is True  # version 1 answers until 2 is whole
    for key, value in _parts("beta", 2, newer):
        book.receive(key, value)
    assert (book.version("beta"), book.member("beta", IDS[-1])) == (2, False)
    book.receive(b"beta", _record("beta", 1, PACKED))  # an old record: ignored
    assert book.version("beta") == 2
    book.receive(b"beta#0", None)  # a tombstone of a part: nothing to do
    book.receive(b"beta", None)
    assert book.member("beta", IDS[0]) is None
    assert book.names() == []


def test_parts_that_do_not_match_the_record_are_counted_and_not_held() -> None:
    book = SegmentBook()
    wrong = pack([*IDS[:-1], "intruder"])
    record = orjson.loads(_record("beta", 1, PACKED))
    book.receive(b"beta", orjson.dumps(record | {"parts": len(wrong.parts)}))
    for key, value in _parts("beta", 1, wrong):
        book.receive(key, value)
    assert (book.member("beta", "intruder"), book.invalid) == (None, 1)


@pytest.mark.parametrize(
    "value",
    [b"{", b"[]", b'{"type": "segment_part"}', orjson.dumps({"type": "segment", "huge": 1})],
)
def test_hostile_records_are_counted_never_raised(value: bytes) -> None:
    book = SegmentBook()
    book.receive(b"\xff\xfe", value)
    assert book.invalid == 1


def test_a_rule_segment_matches_contexts_and_is_no_id_list() -> None:
    book = SegmentBook()
    rule = orjson.loads(parse('plan in ["pro"]').to_json())
    book.receive(b"pros", _record("pros", 1, rule=rule))
    assert book.matches("pros", {"plan": "pro"}) is True
    assert book.matches("pros", {}) is None
    assert book.member("pros", "pro") is None
    assert book.matches("nobody", {"plan": "pro"}) is None


def test_rules_ask_the_book_as_their_segment_lookup() -> None:
    book = SegmentBook()
    for key, value in [*_parts("beta", 1, PACKED), (b"beta", _record("beta", 1, PACKED))]:
        book.receive(key, value)
    audience = Audience.of(parse('user_id in segment("beta") and country == "TH"'))
    assert audience.matches({"user_id": IDS[5], "country": "TH"}, book)
    assert not audience.matches({"user_id": "someone", "country": "TH"}, book)
    assert audience.truth({"user_id": IDS[5], "country": "TH"}, SegmentBook()) is None


def test_with_keys_only_records_the_controller_signed_are_held() -> None:
    key, public = generate_key()
    signer = StateSigner(key, "controller")
    book = SegmentBook(keys={"controller": public})
    rule = orjson.loads(parse('plan == "pro"').to_json())
    record = orjson.loads(_record("pros", 1, rule=rule))
    book.receive(b"pros", orjson.dumps(record))
    forged = record | {"key_id": "controller", "sig": signer.sign_bytes(b"something else")}
    book.receive(b"pros", orjson.dumps(forged))
    assert (book.version("pros"), book.rejected) == (None, 2)
    model = SegmentRecord.model_validate(record).model_dump(by_alias=True, mode="json")
    sig = signer.sign_bytes(signed_bytes(model, "controller"))
    book.receive(b"pros", orjson.dumps(record | {"key_id": "controller", "sig": sig}))
    assert book.version("pros") == 1


class _Unhashable(str):
    __slots__ = ()

    def __hash__(self) -> int:
        raise RuntimeError("hostile")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile")


@pytest.mark.parametrize(
    "value",
    [None, 7, 2**80, 1.5, float("nan"), True, [IDS[0]], {"id": IDS[0]}, b"user", _Unhashable("x")],
)
def test_hostile_context_values_never_raise_out_of_a_segment_rule(value: object) -> None:
    book = SegmentBook()
    for key, record in [*_parts("beta", 1, PACKED), (b"beta", _record("beta", 1, PACKED))]:
        book.receive(key, record)
    for text in ('user_id in segment("beta")', 'user_id not in segment("beta")'):
        audience = Audience.of(parse(text))
        assert audience.matches({"user_id": value}, book) is False
        assert audience.truth({"user_id": value}, book) is None


def test_a_flood_of_parts_under_new_names_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("controller.sdk.segments.MAX_GATHERING", 3)
    book = SegmentBook()
    small = pack(["a"])
    for name in ("n1", "n2", "n3", "n4", "n5"):
        for key, value in _parts(name, 1, small):
            book.receive(key, value)
    assert book.invalid == 2
    book.receive(b"n1", _record("n1", 1, small))
    assert book.member("n1", "a") is True


STAFF_BEFORE = pack(["alice", "bob", "carol"])
STAFF_AFTER = pack(["bob", "carol"])
FORGED = pack(["alice", "bob", "carol", "mallory"])
STAFF_KEY, STAFF_PUBLIC = generate_key()
STAFF_SIGNER = StateSigner(STAFF_KEY, "controller")


def _signed(version: int, packed: PackedIds) -> tuple[bytes, bytes]:
    record = orjson.loads(_record("staff", version, packed))
    model = SegmentRecord.model_validate(record).model_dump(by_alias=True, mode="json")
    sig = STAFF_SIGNER.sign_bytes(signed_bytes(model, "controller"))
    return b"staff", orjson.dumps(record | {"key_id": "controller", "sig": sig})


def _part(version: int, index: int, data: str) -> tuple[bytes, bytes]:
    body: dict[str, Any] = {"type": "segment_part", "id": f"p{index}", "segment": "staff"}
    body |= {"version": version, "index": index, "data": data}
    return f"staff#{index}".encode(), orjson.dumps(ENVELOPE | body)


HUGE = 2**31 - 1
V1 = [_signed(1, STAFF_BEFORE), _part(1, 0, STAFF_BEFORE.parts[0])]
V2_RECORD = _signed(2, STAFF_AFTER)
V2_PART = _part(2, 0, STAFF_AFTER.parts[0])
TOMBSTONE: tuple[bytes, bytes | None] = (b"staff", None)


@pytest.mark.parametrize(
    ("events", "version", "alice"),
    [
        pytest.param(
            [_part(HUGE, 0, FORGED.parts[0]), V2_RECORD, V2_PART], 2, False, id="far-part-first"
        ),
        pytest.param(
            [V2_RECORD, _part(HUGE, 0, FORGED.parts[0]), V2_PART], 2, False, id="far-part-between"
        ),
        pytest.param(
            [*(_part(HUGE - n, 0, FORGED.parts[0]) for n in range(5)), V2_PART, V2_RECORD],
            2,
            False,
            id="far-parts-flood-then-real-part",
        ),
        pytest.param(
            [_part(2, 0, FORGED.parts[0]), V2_RECORD, V2_PART], 2, False, id="forged-part-first"
        ),
        pytest.param(
            [V2_RECORD, _part(2, 0, FORGED.parts[0]), V2_PART], 2, False, id="forged-part-between"
        ),
        pytest.param(
            [_part(2, 3, FORGED.parts[0]), V2_RECORD, V2_PART], 2, False, id="part-past-the-count"
        ),
        pytest.param([TOMBSTONE, *V1], None, None, id="tombstone-then-replay"),
        pytest.param(
            [V2_RECORD, TOMBSTONE, *V1, V2_RECORD, V2_PART], None, None, id="replay-of-waiting"
        ),
        pytest.param(
            [TOMBSTONE, *V1, _signed(3, STAFF_AFTER), _part(3, 0, STAFF_AFTER.parts[0])],
            3,
            False,
            id="put-after-delete",
        ),
    ],
)
def test_unsigned_parts_and_tombstones_never_hold_back_or_roll_back_a_signed_version(
    events: list[tuple[bytes, bytes | None]], version: int | None, alice: bool | None
) -> None:
    book = SegmentBook(keys={"controller": STAFF_PUBLIC})
    for key, value in V1:
        book.receive(key, value)
    assert (book.version("staff"), book.member("staff", "alice")) == (1, True)
    for key, maybe in events:
        book.receive(key, maybe)
    assert (book.version("staff"), book.member("staff", "alice")) == (version, alice)
    assert book.member("staff", "bob") is (None if version is None else True)
