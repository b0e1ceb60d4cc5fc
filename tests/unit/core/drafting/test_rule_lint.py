"""Rules read against a catalogue: unknown names, types, contradictions, and a preview."""

from __future__ import annotations

import pytest

from controller.core.common.errors import ConfigError
from controller.core.drafting.rule_lint import (
    Catalogue,
    Finding,
    Preview,
    errors,
    lint,
    load_catalogue,
    preview,
    preview_findings,
)
from controller.core.rules.matching import IdSegments
from controller.core.rules.text import parse

CATALOGUE = load_catalogue(
    """
attributes:
  user_id: string
  country: string
  plan: string
  age: number
  beta_opt_in: bool
  app_version: semver
  registered_at: date
segments: [beta, staff]
"""
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('country == "TH" and plan in ["pro", "enterprise"]', []),
        ('app_version >= semver("2.3.0") or user_id in segment("beta")', []),
        ('registered_at < date("2024-01-01") and age >= 18 and beta_opt_in == true', []),
        ('contry == "TH"', ["error: unknown attribute 'contry'"]),
        ('user_id in segment("gamma")', ["error: unknown segment 'gamma'"]),
        ('age in segment("beta")', ["error: age is a number: segments hold string ids"]),
        ("app_version >= 2", ["error: app_version is a semver, compared with a number"]),
        ('age == "18"', ["error: age is a number, compared with a string"]),
        ("plan in [1, 2]", ["error: plan is a string, compared with a number"]),
        ('beta_opt_in == "yes"', ["error: beta_opt_in is a bool, compared with a string"]),
        ('country == "TH" and country == "VN"', ["error: country cannot be two values at once"]),
        ('country == "TH" and country != "TH"', ["error: country == and != one value"]),
        ('country == "TH" and country == "TH"', []),
        ('country == "TH" or country != "TH"', ["warning: country == or != one value"]),
        (
            'plan == "pro" and (country == "TH" and country == "VN")',
            ["error: country cannot be two values at once"],
        ),
        (
            'contry == 1 or country == "TH" or country != "TH"',
            ["error: unknown attribute 'contry'", "warning: country == or != one value"],
        ),
    ],
)
def test_lint_finds_what_the_catalogue_and_logic_refute(text: str, expected: list[str]) -> None:
    found = lint(parse(text), CATALOGUE)
    assert len(found) == len(expected), found
    for finding, prefix in zip(found, expected, strict=True):
        assert f"{finding.severity}: {finding.message}".startswith(prefix), finding
    assert len(errors(found)) == sum(e.startswith("error") for e in expected)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("attributes: {country: text}", "attributes.country"),
        ("attributes: {and: string}", "attributes.and"),
        ("attributes: {}\nsegments: ['-bad']", "segments.0"),
        ("attributes: {}\nextra: 1", "extra"),
        ("[1, 2]", "(catalogue)"),
        ("attributes: {a: string}\n" + "b: &x [1]\nc: *x", "aliases"),
    ],
)
def test_a_bad_catalogue_is_refused_naming_the_field(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_catalogue(text)


def test_a_huge_catalogue_is_refused() -> None:
    attributes = {f"a{n}": "string" for n in range(600)}
    with pytest.raises(ConfigError, match="attributes"):
        load_catalogue(str({"attributes": attributes}).replace("'", '"'))


CONTEXTS = [
    {"user_id": "u1", "country": "TH", "plan": "pro"},
    {"user_id": "u2", "country": "TH", "plan": "free"},
    {"user_id": "u3", "country": "VN", "plan": "pro"},
    {"user_id": "u4", "plan": "pro"},
]


@pytest.mark.parametrize(
    ("text", "seen", "warning"),
    [
        ('country == "TH" and plan == "pro"', Preview(4, 1, 1), None),
        ('country == "TH" or plan == "pro"', Preview(4, 4, 0), "matches all 4"),
        ('country == "JP"', Preview(4, 0, 1), "matches none of the 4"),
        ('user_id in segment("beta")', Preview(4, 2, 0), None),
        ('user_id in segment("staff")', Preview(4, 0, 4), "matches none"),
    ],
)
def test_preview_counts_matches_misses_and_unknowns(
    text: str, seen: Preview, warning: str | None
) -> None:
    got = preview(parse(text), CONTEXTS, IdSegments({"beta": {"u1", "u3"}}))
    assert got == seen
    assert got.missed == seen.total - seen.matched - seen.unknown
    warned = preview_findings(got)
    assert [w.message for w in warned if warning and w.message.startswith(warning)] == [
        w.message for w in warned
    ]
    assert bool(warned) == (warning is not None)


def test_no_contexts_no_preview_warning() -> None:
    assert preview_findings(preview(parse('plan == "pro"'), [])) == []
    assert isinstance(CATALOGUE, Catalogue)
    assert Finding("error", "x") in [Finding("error", "x")]


def test_without_a_catalogue_only_the_logic_is_checked() -> None:
    rule = parse("contry == 1 and contry == 2")
    assert [f.message for f in lint(rule, None)] == [
        "contry cannot be two values at once: never true"
    ]
