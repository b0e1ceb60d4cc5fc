"""Evaluating audience rules: three-valued truth, types, case, Unicode, semver, dates, segments."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.rules.audience import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    AudienceRule,
    conditions,
    depth,
)
from controller.core.rules.held_segments import NO_HELD_SEGMENTS
from controller.core.rules.matching import MEMO_SIZE, Audience, IdSegments, Truth
from controller.core.rules.text import parse
from controller.core.rules.values import instant_ns, semver_key

SEGMENTS = IdSegments({"beta": frozenset({"user-1", "ユーザー"}), "empty": frozenset()})
NFC, NFD = "café", "cafe\u0301"


def truth(text: str, context: Mapping[str, object]) -> Truth:
    return Audience.of(parse(text)).truth(context, SEGMENTS)


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        # A missing, null or mistyped attribute is unknown, and so is not of it.
        ('country == "TH"', {}, None),
        ('country == "TH"', {"country": None}, None),
        ('country != "TH"', {}, None),
        ('not country == "TH"', {}, None),
        ('country == "TH"', {"country": 66}, None),
        ('country == "TH"', {"country": ["TH"]}, None),
        ('plan not in ["free"]', {}, None),
        # Numbers: no strings, no booleans; ints and floats are one kind.
        ("age >= 18", {"age": "18"}, None),
        ("age >= 18", {"age": True}, None),
        ("age >= 18", {"age": 18.0}, True),
        ("age == 18.0", {"age": 18}, True),
        ("age >= 18", {"age": float("nan")}, None),
        ("age < 0", {"age": float("-inf")}, True),
        ("age > 0", {"age": 10**400}, True),  # beyond binary64: infinite, as JSON parsers read it
        ("n == 9007199254740991", {"n": 2**53 + 1}, False),
        ("n in [1, 2]", {"n": 2.0}, True),
        ("beta == true", {"beta": 1}, None),
        ("beta == false", {"beta": False}, True),
        # Case-sensitive, no Unicode normalisation.
        ('country == "TH"', {"country": "th"}, False),
        ('plan in ["pro"]', {"plan": "Pro"}, False),
        (f'name == "{NFC}"', {"name": NFD}, False),
        (f'name == "{NFC}"', {"name": NFC}, True),
        ('name contains "é"', {"name": NFD}, False),
        ('name starts_with "ユー"', {"name": "ユーザー"}, True),
        ('name ends_with "😀"', {"name": "hi 😀"}, True),
        ('name contains ""', {"name": ""}, True),
        # Kleene's and / or / not.
        ("a == 1 and b == 1", {"a": 2}, False),
        ("a == 1 and b == 1", {"a": 1}, None),
        ("a == 1 or b == 1", {"b": 1}, True),
        ("a == 1 or b == 1", {"a": 2}, None),
        ("not (a == 1 or b == 1)", {"a": 2, "b": 2}, True),
        ("not (a == 1 and b == 1)", {"a": 2}, True),
        ("not not a == 1", {}, None),
        # Segments: a lookup; an unknown segment or a non-string id is unknown.
        ('user_id in segment("beta")', {"user_id": "user-1"}, True),
        ('user_id in segment("beta")', {"user_id": "USER-1"}, False),
        ('user_id not in segment("beta")', {"user_id": "user-2"}, True),
        ('user_id in segment("empty")', {"user_id": "user-1"}, False),
        ('user_id in segment("gone")', {"user_id": "user-1"}, None),
        ('user_id not in segment("gone")', {"user_id": "user-1"}, None),
        ('user_id in segment("beta")', {"user_id": 1}, None),
    ],
)
def test_evaluation(text: str, context: Mapping[str, object], expected: Truth) -> None:
    assert truth(text, context) is expected
    assert Audience.of(parse(text)).matches(context, SEGMENTS) is (expected is True)


RULE_SEGMENTS = (
    NO_HELD_SEGMENTS.with_segment("beta", 1, ids=frozenset({"user-1"}), rule=None)
    .with_segment("pros", 1, ids=None, rule=parse('plan in ["pro", "enterprise"]'))
    # Refused when put (a segment's rule names no segment); held anyway, it nests no deeper.
    .with_segment("nested", 1, ids=None, rule=parse('user_id in segment("beta")'))
)


@pytest.mark.parametrize(
    ("text", "context", "expected"),
    [
        # A rule segment: its rule against the whole context (the attribute must be a string).
        ('user_id in segment("pros")', {"user_id": "u", "plan": "pro"}, True),
        ('user_id in segment("pros")', {"user_id": "u", "plan": "free"}, False),
        ('user_id not in segment("pros")', {"user_id": "u", "plan": "free"}, True),
        ('user_id in segment("pros")', {"user_id": "u"}, None),
        ('user_id not in segment("pros")', {"user_id": "u"}, None),
        ('user_id in segment("pros")', {"plan": "pro"}, None),
        ('user_id in segment("pros")', {"user_id": 7, "plan": "pro"}, None),
        ('user_id in segment("pros") and country == "TH"', {"user_id": "u", "plan": "pro"}, None),
        ('country == "TH" or user_id in segment("pros")', {"user_id": "u", "plan": "pro"}, True),
        # An id list as before; an unknown name is unknown.
        ('user_id in segment("beta")', {"user_id": "user-1"}, True),
        ('user_id in segment("beta")', {"user_id": "user-2", "plan": "pro"}, False),
        ('user_id in segment("gone")', {"user_id": "u", "plan": "pro"}, None),
        # A rule segment that names a segment is matched without segments: unknown.
        ('user_id in segment("nested")', {"user_id": "user-1"}, None),
    ],
)
def test_rule_segments_match_the_whole_context(
    text: str, context: Mapping[str, object], expected: Truth
) -> None:
    audience = Audience.of(parse(text))
    assert audience.truth(context, RULE_SEGMENTS) is expected
    assert audience.matches(context, RULE_SEGMENTS) is (expected is True)
    assert audience.truth(context, SEGMENTS) is not True or "beta" in text  # ids only: unknown


SEMVER_ORDER = [
    "0.0.0",
    "1.0.0-0",
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.2.0",
    "1.10.0",
    "2.0.0",
    "99999999999999999999.0.0",
]
"""Ascending precedence, semver.org's own example among them."""


def test_semver_precedence() -> None:
    keys = [semver_key(v) for v in SEMVER_ORDER]
    assert None not in keys
    assert keys == sorted(keys)  # type: ignore[type-var]
    assert len(set(keys)) == len(keys)
    assert semver_key("1.0.0+build.5") == semver_key("1.0.0")


@pytest.mark.parametrize(
    "text",
    [
        *["1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0-01", "1.0.0+", "1.0.0-a..b", "1.0.0-é"],
        *[" 1.0.0", "1.0.0.0", "", "1.\u0660.0", "1.0.0-rc_1"],  # an Arabic-Indic zero
    ],
)
def test_not_a_semver(text: str) -> None:
    assert semver_key(text) is None
    assert truth('v >= semver("0.0.0")', {"v": text}) is None


def test_semver_conditions() -> None:
    assert truth('v >= semver("2.3.0")', {"v": "2.3.0-rc.1"}) is False
    assert truth('v >= semver("2.3.0")', {"v": "2.10.0"}) is True
    assert truth('v == semver("2.3.0")', {"v": "2.3.0+linux"}) is True
    assert truth('v != semver("2.3.0")', {"v": 2.3}) is None


_HOUR_NS = 3600 * 10**9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01", 0),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00", 0),  # no offset: UTC, never the host's zone
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T23:00:00-01:00", 0),
        ("1970-01-01T00:00:00.5Z", 500_000_000),
        ("1970-01-01T00:00:00.000000001Z", 1),
        ("2024-02-29", 19_782 * 24 * _HOUR_NS),
        ("0001-01-01", -62_135_596_800 * 10**9),
        ("9999-12-31T23:59:59.999999999+00:00", 253_402_300_799_999_999_999),
    ],
)
def test_instants(text: str, expected: int) -> None:
    assert instant_ns(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        *["2023-02-29", "2024-13-01", "2024-1-01", "2024-01-01T24:00:00Z", "2024-01-01T12:60:00Z"],
        *["2024-01-01T12:00:60Z", "2024-01-01 12:00:00Z", "2024-01-01T12:00Z"],
        *["2024-01-01t12:00:00z", "2024-01-01T12:00:00.Z", "2024-01-01T12:00:00.1234567890Z"],
        *["2024-01-01T12:00:00+24:00", "2024-01-01T12:00:00+0100", "0000-01-01", "yesterday", ""],
        "\uff12\uff10\uff12\uff14-01-01",  # full-width digits
    ],
)
def test_not_an_instant(text: str) -> None:
    assert instant_ns(text) is None
    assert truth('at < date("2100-01-01")', {"at": text}) is None


def test_date_conditions_compare_instants_whatever_their_offsets() -> None:
    rule = 'registered_at < date("2024-01-01")'
    assert truth(rule, {"registered_at": "2023-12-31"}) is True
    assert truth(rule, {"registered_at": "2024-01-01"}) is False
    assert truth(rule, {"registered_at": "2024-01-01T06:59:59+07:00"}) is True
    assert truth(rule, {"registered_at": "2024-01-01T00:00:00.000000001Z"}) is False
    assert truth(rule, {"registered_at": 1_700_000_000}) is None  # epoch numbers are no dates
    later = 'at >= date("2024-01-01T12:00:00+05:30")'
    assert truth(later, {"at": "2024-01-01T06:30:00Z"}) is True
    assert truth(later, {"at": "2024-01-01T06:29:59.999Z"}) is False


def test_parsed_values_are_remembered_within_a_bound() -> None:
    audience = Audience.of(parse('v >= semver("1.0.0")'))
    for i in range(MEMO_SIZE * 2 + 5):
        assert audience.truth({"v": f"1.{i}.0"}) is True
    assert audience.truth({"v": "0.9.0"}) is False


class _Hostile(dict[str, object]):
    def get(self, key: str, default: object = None) -> object:
        raise RuntimeError("boom")


class _BrokenLookup:
    def member(self, segment: str, value: str) -> bool | None:
        raise KeyError(segment)

    def matches(self, segment: str, context: object) -> bool | None:
        raise KeyError(segment)


def test_evaluation_never_raises() -> None:
    audience = Audience.of(parse('a == 1 or user_id in segment("beta")'))
    assert audience.truth(_Hostile()) is None
    assert audience.matches(_Hostile()) is False
    assert audience.matches(None) is False  # type: ignore[arg-type]
    assert audience.matches({"user_id": "u"}, _BrokenLookup()) is False


_ANYTHING = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@given(st.dictionaries(st.sampled_from(["a", "v", "at", "s", "user_id"]), _ANYTHING))
def test_any_context_gives_a_truth(context: dict[str, object]) -> None:
    text = (
        'a in [1, 2] or v >= semver("1.0.0") or at < date("2024-01-01") '
        'or s contains "x" or not user_id in segment("beta")'
    )
    assert truth(text, context) in (True, False, None)


def test_the_result_does_not_depend_on_the_order_of_the_parts() -> None:
    contexts: list[dict[str, object]] = [{}, {"a": 1}, {"b": 1}, {"a": 2, "b": 1}, {"a": "1"}]
    for word in ("and", "or"):
        for context in contexts:
            forward = truth(f'a == 1 {word} b == 1 {word} c == "x"', context)
            backward = truth(f'c == "x" {word} b == 1 {word} a == 1', context)
            assert forward is backward


def test_the_generated_source_holds_no_text_from_the_rule() -> None:
    hostile = '"); import os; os.system("x"); ("'
    rule = AudienceRule.model_validate(
        {
            "or": [
                {"attribute": "__builtins__", "op": "==", "value": hostile},
                {"attribute": "__import__", "op": "in", "value": {"segment": "os.system"}},
                {"attribute": "k0", "op": "==", "value": 1},
            ]
        }
    )
    audience = Audience.of(rule)
    for word in ("import", "os", "system", "__builtins__", "__import__"):
        assert word not in audience.source, word
    assert audience.truth({"k0": 1}) is True
    assert audience.truth({"__builtins__": hostile}) is True
    assert audience.truth({"__import__": "x"}) is None  # the segment "os.system" is unknown


def test_the_largest_rule_compiles_and_evaluates() -> None:
    # Ten levels of alternating and / or, 64 conditions in all: the bounds' worst case.
    text, used = "a0 == 0", 1
    for level in range(1, MAX_DEPTH):
        word = "and" if level % 2 else "or"
        extra = 6 if level < MAX_DEPTH - 1 else MAX_CONDITIONS - used
        parts = [f"a{used + i} == {used + i}" for i in range(extra)]
        used += extra
        text = f" {word} ".join([f"({text})", *parts])
    rule = parse(text)
    assert depth(rule.root) == MAX_DEPTH
    assert len(conditions(rule.root)) == MAX_CONDITIONS
    audience = Audience.of(rule)
    everything = {f"a{i}": i for i in range(used)}
    assert audience.truth(everything) is True
    assert audience.truth({}) is None
