"""Audience rules as text: parsing, refusals with line and column, bounds, round trips."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.core.rules.audience import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    AllOf,
    AnyOf,
    AudienceRule,
    Condition,
    Instant,
    NotRule,
    Segment,
    Semver,
)
from controller.core.rules.text import RuleSyntaxError, parse, to_text

# -- what a text means ---------------------------------------------------------------------------

C = Condition


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('country == "TH"', C(attribute="country", op="==", value="TH")),
        (
            'plan in ["pro", "enterprise"]',
            C(attribute="plan", op="in", value=["pro", "enterprise"]),
        ),
        ('plan not in ["free"]', C(attribute="plan", op="not in", value=["free"])),
        (
            'user_id in segment("beta")',
            C(attribute="user_id", op="in", value=Segment(segment="beta")),
        ),
        (
            'registered_at < date("2024-01-01")',
            C(attribute="registered_at", op="<", value=Instant(date="2024-01-01")),
        ),
        (
            'app_version >= semver("2.3.0")',
            C(attribute="app_version", op=">=", value=Semver(semver="2.3.0")),
        ),
        ("age >= 18", C(attribute="age", op=">=", value=18)),
        ("score < -0.5e1", C(attribute="score", op="<", value=-5.0)),
        ("beta == true", C(attribute="beta", op="==", value=True)),
        ('email ends_with "@x.com"', C(attribute="email", op="ends_with", value="@x.com")),
        ('name contains "\\u00e9\\n"', C(attribute="name", op="contains", value="é\n")),
        ('user.tier_2 != "gold"', C(attribute="user.tier_2", op="!=", value="gold")),
        ("a==1", C(attribute="a", op="==", value=1)),
    ],
)
def test_a_condition_reads_as_written(text: str, expected: Condition) -> None:
    assert parse(text) == AudienceRule(expected)


def _c(name: str) -> Condition:
    return C(attribute=name, op="==", value=1)


def test_and_binds_tighter_than_or_and_a_chain_is_one_node() -> None:
    rule = parse("a == 1 and b == 1 or c == 1 and d == 1 and e == 1")
    assert rule.root == AnyOf.model_validate(
        {"or": [AllOf.model_validate({"and": [_c("a"), _c("b")]}),
                AllOf.model_validate({"and": [_c("c"), _c("d"), _c("e")]})]}
    )  # fmt: skip


def test_parentheses_keep_their_nesting_and_not_binds_to_one_condition() -> None:
    rule = parse("not a == 1 and (b == 1 and c == 1)")
    inner = AllOf.model_validate({"and": [_c("b"), _c("c")]})
    assert rule.root == AllOf.model_validate(
        {"and": [NotRule.model_validate({"not": _c("a")}), inner]}
    )
    assert parse("((a == 1))").root == _c("a")


def test_whitespace_and_newlines_are_free() -> None:
    assert parse('\n  country ==\t"TH"\r\n  and plan == "pro"\n') == parse(
        'country == "TH" and plan == "pro"'
    )


# -- what is refused, and where ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "reason"),
    [
        ('country = "TH"', 1, 9, "expected an operator"),
        ('country equals "TH"', 1, 9, "expected an operator (==, !="),
        ('country == "TH" and\n  plan ~ "pro"', 2, 8, "unexpected character '~'"),
        ("country == ", 1, 12, "found the end of the rule"),
        ("country == TH", 1, 12, "expected a value"),
        ('country == "TH" plan == "pro"', 1, 17, "expected and, or, or the end"),
        ('(country == "TH"', 1, 17, "expected ')'"),
        ('country == "TH")', 1, 16, "expected and, or"),
        ('country == "TH', 1, 12, "not closed"),
        ('a == "\\x41"', 1, 6, "bad escape"),
        ('a == "\\ud800"', 1, 6, "not Unicode"),
        ("and == 1", 1, 1, "reserved word"),
        ("date == 1", 1, 1, "reserved word"),
        ("_" + "x" * 64 + " == 1", 1, 1, "1 to 64 characters"),
        ('a < "x"', 1, 5, "< takes a number, a semver or a date, not a string"),
        ("a starts_with 1", 1, 15, "starts_with takes a string, not a number"),
        ('a == ["x"]', 1, 6, "expected a value"),
        ('a in "x"', 1, 6, "expected a list"),
        ('a in [1, "x"]', 1, 7, "only strings or only numbers"),
        ("a in [true]", 1, 7, "only strings or only numbers"),
        ("a in []", 1, 7, "expected a value"),
        ('a == semver("1.0")', 1, 13, "not a semantic version"),
        ('a == semver("v1.0.0")', 1, 13, "not a semantic version"),
        ('a < date("2023-02-29")', 1, 10, "not a date"),
        ('a < date("2024-01-01 10:00")', 1, 10, "not a date"),
        ('a in segment("")', 1, 14, "not a segment name"),
        ("a in segment(beta)", 1, 14, "expected a string"),
        ("a not [1]", 1, 7, "expected in (after not)"),
        ("a == 9007199254740992", 1, 6, "integer beyond"),
        ("a == 1e400", 1, 6, "not a finite number"),
        ("a == 1" + "0" * 400, 1, 6, "integer beyond"),  # past a float's range: no overflow
        ("a in [1, -1" + "0" * 400 + "]", 1, 10, "integer beyond"),
        ("a == 1.2.3", 1, 6, "is not a number"),
        ("a == 01", 1, 6, "is not a number"),
        ("not", 1, 4, "expected an attribute name"),
        ("", 1, 1, "expected an attribute name"),
        ('a == "é" and\n\n   é == 1', 3, 4, "unexpected character 'é'"),
    ],
)
def test_a_bad_rule_is_refused_with_its_position(
    text: str, line: int, column: int, reason: str
) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse(text)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert reason in error.reason, str(error)
    assert str(error).startswith(f"line {line}, column {column}: ")


# -- bounds --------------------------------------------------------------------------------------


def test_a_text_over_the_limit_is_refused_where_it_goes_over() -> None:
    text = "a in [" + ", ".join(['"xxxxxxxxxx"'] * 400) + "]"
    with pytest.raises(RuleSyntaxError, match="at most 4096") as caught:
        parse(text)
    assert caught.value.column == MAX_TEXT_CHARS + 1


def test_nesting_deeper_than_the_limit_is_refused_at_the_parenthesis() -> None:
    ok = "(" * (MAX_DEPTH - 1) + "a == 1" + ")" * (MAX_DEPTH - 1)
    parse(ok)
    too_deep = "(" * (MAX_DEPTH + 1) + "a == 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(RuleSyntaxError, match="deeper than 10") as caught:
        parse(too_deep)
    assert caught.value.column == MAX_DEPTH + 1


def test_a_wall_of_parentheses_or_nots_is_refused_without_recursing() -> None:
    for text in ("(" * 4000, "not " * 1000 + "a == 1"):
        with pytest.raises(RuleSyntaxError, match="deeper than"):
            parse(text)


def test_a_deep_rule_without_parentheses_is_refused() -> None:
    text = "a == 1"
    for i in range(MAX_DEPTH):
        text = f"b{i} == 1 or ({text} and c{i} == 1)"
    with pytest.raises(RuleSyntaxError, match="deeper than"):
        parse(text)


def test_too_many_conditions_are_refused_at_the_first_one_too_many() -> None:
    parse(" or ".join(f"a{i} == 1" for i in range(MAX_CONDITIONS)))
    text = " or ".join(f"a{i} == 1" for i in range(MAX_CONDITIONS + 1))
    with pytest.raises(RuleSyntaxError, match="more than 64 conditions") as caught:
        parse(text)
    assert caught.value.column == text.index(f"a{MAX_CONDITIONS} ") + 1


def test_a_long_list_and_a_long_string_are_refused() -> None:
    listed = "a in [" + ",".join(str(i) for i in range(MAX_LIST_ITEMS + 1)) + "]"
    with pytest.raises(RuleSyntaxError, match="use a segment"):
        parse(listed)
    with pytest.raises(RuleSyntaxError, match="at most 256"):
        parse(f'a == "{"x" * 257}"')
    many_lists = " or ".join(f"a{i} in [{','.join(['1'] * 200)}]" for i in range(6))
    with pytest.raises(RuleSyntaxError, match="more than 1024 listed values"):
        parse(many_lists)


# -- the JSON form -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ({"attribute": "a", "op": "==", "value": [1]}, "== takes"),
        ({"attribute": "a", "op": "<", "value": True}, "< takes"),
        ({"attribute": "a", "op": "=~", "value": "x"}, "literal_error"),
        ({"attribute": "not", "op": "==", "value": 1}, "reserved word"),
        ({"attribute": "a b", "op": "==", "value": 1}, "string_pattern_mismatch"),
        ({"attribute": "a", "op": "==", "value": 2**53}, "less than or equal"),
        ({"attribute": "a", "op": "==", "value": "x", "extra": 1}, "extra_forbidden"),
        ({"attribute": "a", "op": "in", "value": []}, "too_short"),
        ({"and": [{"attribute": "a", "op": "==", "value": 1}]}, "too_short"),
        ({"and": [], "or": []}, "extra_forbidden"),
        ({"attribute": "a", "op": "==", "value": {"semver": "1"}}, "semantic version"),
        ({"attribute": "a", "op": "==", "value": "\ud800"}, "string_unicode"),
    ],
)
def test_a_bad_json_rule_is_refused(wire: object, reason: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AudienceRule.model_validate(wire)
    text = str(caught.value) + json.dumps([e["type"] for e in caught.value.errors()])
    assert reason in text


def test_a_deep_json_rule_is_refused() -> None:
    wire: object = {"attribute": "a", "op": "==", "value": 1}
    for _ in range(MAX_DEPTH):
        wire = {"not": wire}
    with pytest.raises(ValidationError, match="deeper than 10"):
        AudienceRule.model_validate(wire)
    hostile = '{"not":' * 20_000 + json.dumps(wire) + "}" * 20_000
    with pytest.raises(ValidationError, match="recursion limit"):
        AudienceRule.model_validate_json(hostile)
    for _ in range(100_000):  # as Python objects too: refused, never a stack overflow
        wire = {"not": wire}
    with pytest.raises(ValidationError):
        AudienceRule.model_validate(wire)


def test_the_json_form_uses_the_words_of_the_text() -> None:
    rule = parse('not (a == 1 or b in segment("beta")) and c >= semver("1.0.0")')
    assert json.loads(rule.to_json()) == {
        "and": [
            {
                "not": {
                    "or": [
                        {"attribute": "a", "op": "==", "value": 1},
                        {"attribute": "b", "op": "in", "value": {"segment": "beta"}},
                    ]
                }
            },
            {"attribute": "c", "op": ">=", "value": {"semver": "1.0.0"}},
        ]
    }
    assert AudienceRule.model_validate_json(rule.to_json()) == rule


# -- the printer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'country == "TH" and plan in ["pro", "enterprise"]',
        '(a == 1 and b == 2) or not (c < 3 or d != "x")',
        "not not a == true",
        'x == "quote \\" backslash \\\\ tab \\t ü 😀"',
        "n in [1, 2.5, -0.0, 1e+16, 1.5e-07]",
        "a == 1 and (b == 1 and c == 1)",
    ],
)
def test_the_printer_writes_what_the_parser_reads(text: str) -> None:
    rule = parse(text)
    assert parse(to_text(rule)) == rule
    assert to_text(parse(to_text(rule))) == to_text(rule)


_NAMES = st.sampled_from(["a", "b", "country", "app.version", "_x1"])
_TEXTS = st.text(max_size=12).filter(lambda s: s == s.encode("utf-8", "ignore").decode())
_NUMBERS = st.one_of(
    st.integers(-(2**53) + 1, 2**53 - 1), st.floats(allow_nan=False, allow_infinity=False)
)
_VALUES = st.one_of(
    st.tuples(st.sampled_from(["==", "!="]), st.one_of(_TEXTS, st.booleans())),
    st.tuples(st.sampled_from(["==", "<", ">="]), _NUMBERS),
    st.tuples(st.sampled_from(["starts_with", "ends_with", "contains"]), _TEXTS),
    st.tuples(st.sampled_from(["in", "not in"]), st.lists(_TEXTS, min_size=1, max_size=4)),
    st.tuples(st.sampled_from(["in", "not in"]), st.lists(_NUMBERS, min_size=1, max_size=4)),
    st.tuples(st.just("in"), st.builds(Segment, segment=st.sampled_from(["beta", "a.b:c-1"]))),
    st.tuples(st.just(">"), st.builds(Semver, semver=st.sampled_from(["1.0.0-rc.1+b", "0.0.0"]))),
    st.tuples(st.just("<"), st.builds(Instant, date=st.sampled_from(["2024-01-01T00:00:00.5Z"]))),
)


@st.composite
def _conditions(draw: st.DrawFn) -> Condition:
    op, value = draw(_VALUES)
    return Condition(attribute=draw(_NAMES), op=op, value=value)


_RULES = st.recursive(
    _conditions(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda p: AllOf.model_validate({"and": p})),
        st.lists(inner, min_size=2, max_size=3).map(lambda p: AnyOf.model_validate({"or": p})),
        inner.map(lambda r: NotRule.model_validate({"not": r})),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_RULES)
def test_any_rule_survives_text_and_json_round_trips(node: object) -> None:
    try:
        rule = AudienceRule.model_validate(node)
    except ValidationError:
        return  # deeper than allowed: the bounds tests cover it
    assert parse(to_text(rule)) == rule
    assert AudienceRule.model_validate_json(rule.to_json()) == rule


_TOKENS = st.sampled_from(
    [
        *["a", "b.c", "==", "!=", "<", ">=", "in", "not", "and", "or", "(", ")", "[", "]", ","],
        *['"x"', '"\\u00e9"', "1", "-2.5e3", "true", "segment", "semver", "date", '("2.0.0")'],
        *["starts_with", "contains", '"', "\\", "\n", " ", "é", "=", "!", "01", "1e999"],
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_TOKENS, max_size=30).map(" ".join) | st.text(max_size=200))
def test_any_text_is_a_rule_or_a_positioned_refusal(text: str) -> None:
    try:
        rule = parse(text)
    except RuleSyntaxError as error:
        refused = error
    else:
        assert parse(to_text(rule)) == rule
        return
    lines = text.split("\n")
    assert 1 <= refused.line <= len(lines)
    assert 1 <= refused.column <= len(lines[refused.line - 1]) + 1
