"""Typed arm values: declared with one type, bounded, refused with the field and reason."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.common.errors import ConfigError
from controller.core.rollouts.plan import load_plan, parse_plan
from controller.core.wire.arm_values import (
    BOOLEAN,
    MAX_KEY_CHARS,
    MAX_OBJECT_BYTES,
    MAX_OBJECT_DEPTH,
    MAX_OBJECT_ITEMS,
    MAX_SAFE_NUMBER,
    MAX_STRING_CHARS,
    ArmValues,
    values_problem,
)


def nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep (``{}`` is one level)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("kind", "control", "treatment", "problem"),
    [
        ("boolean", False, True, ""),
        ("boolean", True, False, ""),
        ("string", "v1-ranker", "v2-ranker", ""),
        ("string", "", "x" * MAX_STRING_CHARS, ""),
        ("number", 0, 2.5, ""),
        ("number", -MAX_SAFE_NUMBER, MAX_SAFE_NUMBER, ""),
        ("object", {}, {"limit": 10, "tags": ["a", None, True], "nested": {"x": 1.5}}, ""),
        ("object", {}, nested(MAX_OBJECT_DEPTH), ""),
        ("string", "a", None, "treatment is required with type string"),
        ("number", None, 1, "control is required with type number"),
        ("string", "a", 3, "treatment: type string needs a string, got a number"),
        ("number", "1", 2, "control: type number needs a number, got a string"),
        ("number", True, 2, "control: type number needs a number, got a boolean"),
        ("boolean", 0, 1, "control: type boolean needs a boolean, got a number"),
        ("object", [1], {}, "control: type object needs an object, got an array"),
        ("object", {}, "x", "treatment: type object needs an object, got a string"),
        ("string", "a", "x" * (MAX_STRING_CHARS + 1), "a string of 1025 characters, over 1024"),
        ("number", float("nan"), 1, "control: nan is not a finite number"),
        ("number", 1, float("inf"), "treatment: inf is not a finite number"),
        ("number", 1, -float("inf"), "treatment: -inf is not a finite number"),
        ("number", 1, 2.0**53, "beyond ±9007199254740991"),
        ("number", -(10**30), 1, "beyond ±9007199254740991"),
        ("number", 1, 10**400, "an integer of 1329 bits is beyond ±9007199254740991"),
        ("number", 2**53, 1, "an integer of 54 bits is beyond ±9007199254740991"),
        ("object", {}, {"a": [-(10**5000)]}, "an integer of 16610 bits is beyond"),
        ("object", {}, nested(MAX_OBJECT_DEPTH + 1), "nests deeper than 8 levels"),
        ("object", {}, {"a": [[[[[[[[1]]]]]]]]}, "nests deeper than 8 levels"),
        ("object", {"x": list(range(MAX_OBJECT_ITEMS))}, {}, "more than 256 values"),
        ("object", {}, {f"k{i}": "v" * 40 for i in range(120)}, f"over {MAX_OBJECT_BYTES}"),
        ("object", {}, {"k" * (MAX_KEY_CHARS + 1): 1}, "a key of 129 characters, over 128"),
        ("object", {}, {1: "a"}, "a key that is not a string"),
        ("object", {}, {"a": float("nan")}, "nan is not a finite number"),
        ("object", {}, {"a": {"b": "x" * 2000}}, "a string of 2000 characters"),
        ("object", {}, {"when": object()}, "object (not JSON)"),
        ("string", "\ud800", "b", "control: '\\ud800' is not valid Unicode (a lone surrogate)"),
        ("object", {}, {"a": ["\udfff"]}, "is not valid Unicode (a lone surrogate)"),
        ("object", {}, {"\ud800x": 1}, "a key that is not valid Unicode (a lone surrogate)"),
    ],
)
def test_values_are_checked(kind: str, control: object, treatment: object, problem: str) -> None:
    found = values_problem(kind, control, treatment)
    if problem:
        assert problem in found
    else:
        assert found == ""


def test_a_boolean_declaration_defaults_to_false_and_true() -> None:
    assert ArmValues() == BOOLEAN == ArmValues(type="boolean", control=False, treatment=True)
    assert BOOLEAN.default
    assert not ArmValues(control=True, treatment=False).default
    assert (BOOLEAN.of(True), BOOLEAN.of(False)) == (True, False)


@pytest.mark.parametrize(
    ("control", "treatment", "served", "signed"),
    [
        (1.0, 2.5, (1.0, 2.5), [1, 2.5]),  # a float flag whose value is whole stays a float
        (1.0, 2.0, (1.0, 2.0), [1, 2]),
        (1, 2.5, (1.0, 2.5), [1, 2.5]),  # one float arm: both served as floats
        (1, 2, (1, 2), [1, 2]),  # integers stay integers
        (-0.0, 3, (-0.0, 3.0), [0, 3]),
    ],
)
def test_numbers_keep_their_declared_type_and_sign_canonically(
    control: float, treatment: float, served: tuple[float, float], signed: list[float]
) -> None:
    values = ArmValues.model_validate(
        {"type": "number", "control": control, "treatment": treatment}
    )
    got = (values.control, values.treatment)
    assert [(v, type(v)) for v in got] == [(v, type(v)) for v in served]
    assert [(v, type(v)) for v in values.signed()[1:]] == [(v, type(v)) for v in signed]
    again = ArmValues.model_validate_json(values.model_dump_json())  # as stored and read back
    assert [type(v) for v in (again.control, again.treatment)] == [type(v) for v in served]


def test_an_objects_numbers_keep_their_type_and_sign_canonically() -> None:
    inside = ArmValues.model_validate({"type": "object", "control": {"a": [1.0]}, "treatment": {}})
    assert type(inside.control["a"][0]) is float
    assert inside.signed() == ["object", {"a": [1]}, {}]
    assert type(inside.signed()[1]["a"][0]) is int


PLAN = {"stages": [{"percent": 50}, {"percent": 100}]}


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"type": "string", "control": "a", "treatment": 1}, "values: "),
        ({"type": "text", "control": "a", "treatment": "b"}, "values.type: "),
        ({"type": "string", "control": "a", "treatment": "b", "extra": 1}, "values.extra: "),
        ({"type": "number", "control": 1}, "treatment is required with type number"),
        ("string", "values: "),
    ],
)
def test_a_plan_refuses_bad_values_naming_the_field(values: object, problem: str) -> None:
    with pytest.raises(ConfigError, match="invalid plan") as refused:
        parse_plan({**PLAN, "values": values})
    assert problem in str(refused.value)


def test_a_plan_declares_values_in_yaml() -> None:
    plan = load_plan(
        "stages: [{percent: 50}, {percent: 100}]\n"
        "values: {type: string, control: v1-ranker, treatment: v2-ranker}\n"
    )
    assert plan.arm_values == ArmValues(type="string", control="v1-ranker", treatment="v2-ranker")
    with pytest.raises(ConfigError, match=r"values: .*not a finite number"):
        load_plan("stages: [{percent: 50}]\nvalues: {type: number, control: .nan, treatment: 1}\n")
    # YAML escapes can spell a lone surrogate, which no JSON encoder can sign or send.
    for values in (
        '{type: string, control: "\\ud800", treatment: b}',
        '{type: object, control: {"\\udc00": 1}, treatment: {}}',
    ):
        with pytest.raises(ConfigError, match=r"values: .*not valid Unicode"):
            load_plan(f"stages: [{{percent: 50}}]\nvalues: {values}\n")


def test_without_values_or_with_the_default_ones_a_plan_is_as_before() -> None:
    assert parse_plan(PLAN).arm_values is None
    assert parse_plan({**PLAN, "values": {}}).arm_values is None
    assert parse_plan({**PLAN, "values": {"type": "boolean"}}).arm_values is None


def test_unleash_cannot_serve_typed_values() -> None:
    unleash = {"backend": {"unleash": {"feature": "checkout"}}}
    typed = {"type": "string", "control": "a", "treatment": "b"}
    with pytest.raises(ConfigError, match=r"backend\.unleash: Unleash serves a flag on or off"):
        parse_plan({**PLAN, **unleash, "values": typed})
    assert parse_plan({**PLAN, **unleash, "values": {"type": "boolean"}}).unleash is not None


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ({"type": "string", "control": "v1", "treatment": "v2"},
         'treatment "v2", control "v1" (string)'),
        ({"type": "number", "control": 0, "treatment": 2.5}, "treatment 2.5, control 0.0 (number)"),
        ({"type": "object", "control": {}, "treatment": {"k": "x" * 80}},
         'treatment {"k":"' + "x" * 53 + '…, control {} (object)'),
        ({"type": "string", "control": "a\nb", "treatment": "é"},
         'treatment "é", control "a\\nb" (string)'),
    ],
)  # fmt: skip
def test_values_are_shown_to_people_as_json_cut_short(values: dict[str, Any], text: str) -> None:
    assert ArmValues.model_validate(values).text() == text
