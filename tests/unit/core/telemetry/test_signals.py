"""The bounds both OTLP decoders share: attributes, ids, and one item refused among its siblings."""

from __future__ import annotations

import pytest

from controller.core.telemetry import (
    WHOLE_BODY,
    Attributes,
    Bounds,
    Refusal,
    Refused,
    check_count,
    items_of,
    kept_attributes,
    span_id_from,
    span_id_of,
    trace_id_from,
    trace_id_of,
)

BOUNDS = Bounds(max_items=5, max_attributes=4, max_key_chars=8, max_value_chars=10)


@pytest.mark.parametrize(
    ("pairs", "kept"),
    [
        (
            [("a", "text"), ("b", True), ("c", 7), ("d", 1.5)],
            {"a": "text", "b": True, "c": 7, "d": 1.5},
        ),
        ([("a", [1, 2]), ("b", {"k": "v"}), ("c", b"\x00"), ("d", None)], {}),
        ([("a", "v" * 10), ("b", "v" * 11)], {"a": "v" * 10, "b": "v" * 10}),
        ([("k" * 8, 1), ("k" * 9, 2), ("b", "kept")], {"k" * 8: 1, "b": "kept"}),
        ([("k" * 9, "v" * 11)], {}),
        ([("a", "v" * 65_536), ("b", 500)], {"a": "v" * 10, "b": 500}),
        ([], {}),
    ],
    ids=[
        "scalars",
        "others-dropped",
        "long-value-cut",
        "long-key-dropped",
        "long-key-and-value",
        "64k-value",
        "none",
    ],
)
def test_scalars_are_kept_cut_to_their_bound_and_what_is_not_read_is_dropped(
    pairs: list[tuple[str, object]], kept: dict[str, object]
) -> None:
    assert kept_attributes(dict(pairs), len(pairs), BOUNDS) == kept


def test_only_more_attributes_than_the_bound_refuses_their_item() -> None:
    pairs: dict[str, object] = dict.fromkeys("abcde", 1)
    with pytest.raises(Refused) as refused:
        kept_attributes(pairs, len(pairs), BOUNDS)
    assert (refused.value.reason, refused.value.detail) == ("oversize", "5 attributes > 4")


def test_the_count_of_pairs_is_checked_before_any_is_read() -> None:
    check_count(4, BOUNDS)
    with pytest.raises(Refused, match="oversize: 10000 attributes > 4"):
        check_count(10_000, BOUNDS)


@pytest.mark.parametrize(
    ("text", "required", "expected"),
    [
        ("0AF7651916CD43DD8448EB211C80319C", True, "0af7651916cd43dd8448eb211c80319c"),
        ("", False, ""),
        ("0" * 32, False, ""),
        ("0" * 32, True, None),
        ("", True, None),
        ("0af7651916cd43dd8448eb211c80319", True, None),
        ("zzf7651916cd43dd8448eb211c80319c", True, None),
        ("+af7651916cd43dd8448eb211c80319c", False, None),
    ],
)
def test_trace_ids_are_32_hex_digits_in_lower_case(
    text: str, required: bool, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(Refused, match="malformed"):
            trace_id_of(text, required=required)
    else:
        assert trace_id_of(text, required=required) == expected


@pytest.mark.parametrize(
    ("text", "required", "expected"),
    [
        ("B7AD6B7169203331", True, "b7ad6b7169203331"),
        ("", False, ""),
        ("0" * 16, False, ""),
        ("0" * 16, True, None),
        ("b7ad6b716920333", False, None),
        ("b7ad6b71692033g1", True, None),
        ("b7ad6b7169203331" * 2, True, None),
    ],
)
def test_span_ids_are_16_hex_digits_in_lower_case(
    text: str, required: bool, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(Refused, match="malformed"):
            span_id_of(text, required=required)
    else:
        assert span_id_of(text, required=required) == expected


@pytest.mark.parametrize(
    ("raw", "required", "expected"),
    [
        (
            bytes.fromhex("0af7651916cd43dd8448eb211c80319c"),
            True,
            "0af7651916cd43dd8448eb211c80319c",
        ),
        (b"", False, ""),
        (bytes(16), False, ""),
        (bytes(16), True, None),
        (b"", True, None),
        (b"\x01" * 15, False, None),
        (b"\x01" * 17, True, None),
    ],
)
def test_protobuf_trace_ids_are_16_bytes(raw: bytes, required: bool, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(Refused, match="malformed"):
            trace_id_from(raw, required=required)
    else:
        assert trace_id_from(raw, required=required) == expected


@pytest.mark.parametrize(
    ("raw", "required", "expected"),
    [
        (bytes.fromhex("b7ad6b7169203331"), True, "b7ad6b7169203331"),
        (b"", False, ""),
        (bytes(8), False, ""),
        (bytes(8), True, None),
        (b"\x01" * 16, False, None),
    ],
)
def test_protobuf_span_ids_are_8_bytes(raw: bytes, required: bool, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(Refused, match="malformed"):
            span_id_from(raw, required=required)
    else:
        assert span_id_from(raw, required=required) == expected


def _resource(resource: str, bounds: Bounds) -> Attributes:
    if resource == "bad":
        raise Refused("hostile_attribute", "a key of 300 chars > 256")
    return {"service.name": resource}


def _item(item: str, resource: Attributes, bounds: Bounds) -> str:
    if item.startswith("bad"):
        raise Refused("malformed", item)
    return f"{resource['service.name']}/{item}"


def test_items_are_numbered_across_resources_and_a_bad_one_keeps_its_siblings() -> None:
    groups = [("shop", ["a", "bad-1", "b"]), ("bad", ["c", "d"]), ("cart", ["e"])]
    found = items_of(groups, Bounds(), _resource, _item)
    assert not isinstance(found, Refusal)
    kept, refused = found
    assert kept == ["shop/a", "shop/b", "cart/e"]
    assert refused == [
        Refusal(1, "malformed", "bad-1"),
        Refusal(3, "hostile_attribute", "resource: a key of 300 chars > 256"),
        Refusal(4, "hostile_attribute", "resource: a key of 300 chars > 256"),
    ]


def test_an_export_of_more_items_than_the_bound_is_refused_whole() -> None:
    groups = [("shop", ["a", "b", "c"]), ("cart", ["d", "e", "f"])]
    assert items_of(groups, BOUNDS, _resource, _item) == Refusal(
        WHOLE_BODY, "oversize", "6 items > 5"
    )
