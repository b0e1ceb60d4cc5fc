"""The flat form a model drafts rules in: its schema, and its reading into the rule model."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.drafting.rule_form import draft_schema, from_form, is_form
from controller.core.drafting.rule_lint import load_catalogue
from controller.core.rules.text import to_text

CATALOGUE = load_catalogue(
    "attributes: {country: string, age: number, seen: date, app_version: semver}"
)


def flat(match: str, *conditions: tuple[Any, Any, Any]) -> dict[str, Any]:
    parts = [{"attribute": a, "op": o, "value": v} for a, o, v in conditions]
    return {"match": match, "conditions": parts}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (flat("all", ("country", "==", "TH")), 'country == "TH"'),
        (flat("any", ("age", ">=", 18), ("age", "<", 5)), "age >= 18 or age < 5"),
        (flat("all", ("seen", "<", "2024-01-01")), 'seen < date("2024-01-01")'),
        (flat("all", ("app_version", ">=", "2.3.0")), 'app_version >= semver("2.3.0")'),
        (flat("all", ("country", "in segment", "beta")), 'country in segment("beta")'),
        (flat("all", ("country", "in", ["TH", "VN"])), 'country in ["TH", "VN"]'),
        (flat("all", ("country", "in segment", ["b"])), "a segment is named by a string"),
        (
            {"match": "all", "conditions": [{"attribute": "age", "op": "==", "value": 1}, {}]},
            "condition 2: not an object",
        ),
        (flat("all", ("seen", "<", "yesterday")), "is not a date"),
        ({"match": "all", "conditions": "country"}, "a list of conditions"),
        (flat("all", ("country", ["=="], "TH")), "condition 1: attribute and op are strings"),
        (flat("all", ("country", {"in": 1}, "TH")), "attribute and op are strings"),
        (flat("all", (["seen"], "<", "2024-01-01")), "attribute and op are strings"),
    ],
)
def test_a_flat_draft_reads_as_a_rule_or_says_why_not(data: dict[str, Any], expected: str) -> None:
    assert is_form(data)
    rule = from_form(data, CATALOGUE)
    shown = rule if isinstance(rule, str) else to_text(rule)
    assert expected in shown


def test_the_schema_enumerates_the_catalogue_only_when_there_is_one() -> None:
    with_catalogue = draft_schema(CATALOGUE)["properties"]["conditions"]["items"]
    assert with_catalogue["properties"]["attribute"]["enum"] == [
        "age",
        "app_version",
        "country",
        "seen",
    ]
    without = draft_schema(None)["properties"]["conditions"]["items"]
    assert "enum" not in without["properties"]["attribute"]
    assert not is_form({"rule": "x"})
