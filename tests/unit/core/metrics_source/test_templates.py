"""Query templates: where each placeholder may stand, and filling that cannot inject."""

from __future__ import annotations

import pytest

from controller.core.metrics_source.templates import (
    TemplateError,
    UnsafeValue,
    fill,
    parse_template,
)

ERRORS = 'sum(increase(req_total{feature="{{flag}}", variant="{{arm}}", code=~"5.."}[{{window}}]))'


@pytest.mark.parametrize(
    ("template", "refused"),
    [
        (ERRORS, None),
        ("sum(x{f='{{ flag }}'} @ {{stage_start}})", None),
        ("sum(x{f=`{{flag}}`})", None),
        ('x{f="{{flags}}"}', "unknown placeholder '{{flags}}'"),
        ('x{f="{{}}"}', "unknown placeholder '{{}}'"),
        ("x{f={{flag}}}", "{{flag}} must stand inside a quoted label value"),
        ("{{arm}}_total", "{{arm}} must stand inside a quoted label value"),
        ('x{f="{{window}}"}', "{{window}} must stand outside a string"),
        ('x{f="{{flag}}}', "the string opened at offset 4 is not closed"),
        ('x{f="a"} {{ flag', "opens no placeholder"),
        ("x # {{flag}}", "a placeholder in the comment"),
        ("   ", "the query is empty"),
        ("x" * 2001, "at most 2000 characters"),
    ],
)
def test_a_template_is_refused_with_what_is_wrong(template: str, refused: str | None) -> None:
    if refused is None:
        assert parse_template(template).names
        return
    with pytest.raises(TemplateError, match=None) as caught:
        parse_template(template)
    assert refused in str(caught.value)


def test_filling_puts_each_value_where_it_belongs() -> None:
    filled = fill(parse_template(ERRORS), flag="checkout", arm="on", window_s=125.7, start_s=1e9)
    assert filled == (
        'sum(increase(req_total{feature="checkout", variant="on", code=~"5.."}[125s]))'
    )
    at = fill(parse_template("x @ {{stage_start}}"), flag="f", arm="a", window_s=0, start_s=12.5)
    assert at == "x @ 12.500"


def test_a_regex_matcher_matches_the_value_literally() -> None:
    template = parse_template('x{f=~"{{flag}}|other", g=~`{{arm}}`}')
    filled = fill(template, flag="a.b", arm="c.d", window_s=1, start_s=0)
    assert filled == 'x{f=~"a\\\\.b|other", g=~`c\\.d`}'


@pytest.mark.parametrize(
    "flag",
    [
        'x"} or vector(1) or {a="',  # closes the matcher, adds a series of its own
        "x'} or vector(1)",
        "a\\",  # escapes the closing quote
        "a b",
        "a\nb",
        "",
        "-leading",
        "x" * 129,
        "a{b}",
        "é",
    ],
)
def test_a_flag_key_built_to_inject_promql_is_refused(flag: str) -> None:
    with pytest.raises(UnsafeValue, match="the flag key"):
        fill(parse_template(ERRORS), flag=flag, arm="on", window_s=60, start_s=0)


def test_an_arm_label_value_is_bounded_alike() -> None:
    with pytest.raises(UnsafeValue, match="the arm's label value"):
        fill(parse_template(ERRORS), flag="f", arm='on"}', window_s=60, start_s=0)


def test_an_escaped_quote_does_not_end_the_string() -> None:
    template = parse_template('x{f="a\\"{{flag}}"}')
    assert fill(template, flag="k", arm="a", window_s=1, start_s=0) == 'x{f="a\\"k"}'
