"""Audience rules as Unleash constraints: the translation, table by table, and its refusals."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.common.errors import ConfigError
from controller.core.rollouts.plan import parse_plan
from controller.core.rules.text import parse
from controller.core.rules.unleash_constraints import EARLIEST_DATE, PIVOT, Constraint
from controller.core.rules.unleash_rules import MAX_STRATEGIES, ring_strategies, rule_terms


def _c(name: str, op: str, *values: str, value: str | None = None, inv: bool = False) -> Constraint:
    return Constraint(name, op, tuple(values), value, inv)


HIGH, LOW = _c("age", "NUM_GTE", value=PIVOT), _c("age", "NUM_LT", value=PIVOT)
AT_IS_DATE = _c("at", "DATE_AFTER", value=EARLIEST_DATE)
DAY = "2024-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ('country == "TH"', [[_c("country", "IN", "TH")]]),
        ('country in ["TH", "VN"]', [[_c("country", "IN", "TH", "VN")]]),
        ('not country != "TH"', [[_c("country", "IN", "TH")]]),
        ('country starts_with "T"', [[_c("country", "STR_STARTS_WITH", "T")]]),
        ("age >= 18", [[_c("age", "NUM_GTE", value="18")]]),
        ("not age < 18.5", [[_c("age", "NUM_GTE", value="18.5")]]),
        ("age == 18", [[_c("age", "NUM_EQ", value="18")]]),
        (
            "age != 18",
            [
                [_c("age", "NUM_EQ", value="18", inv=True), HIGH],
                [_c("age", "NUM_EQ", value="18", inv=True), LOW],
            ],
        ),
        ("age in [1, 2]", [[_c("age", "NUM_EQ", value="1")], [_c("age", "NUM_EQ", value="2")]]),
        (
            "age not in [1, 2]",
            [
                [
                    _c("age", "NUM_EQ", value="1", inv=True),
                    _c("age", "NUM_EQ", value="2", inv=True),
                    bound,
                ]
                for bound in (HIGH, LOW)
            ],
        ),
        ("beta == true", [[_c("beta", "IN", "True", "true")]]),
        (
            'v >= semver("2.3.0")',
            [[_c("v", "SEMVER_GT", value="2.3.0")], [_c("v", "SEMVER_EQ", value="2.3.0")]],
        ),
        (
            'v != semver("2.3.0")',
            [[_c("v", "SEMVER_LT", value="2.3.0")], [_c("v", "SEMVER_GT", value="2.3.0")]],
        ),
        (
            'not v > semver("2.3.0")',
            [[_c("v", "SEMVER_LT", value="2.3.0")], [_c("v", "SEMVER_EQ", value="2.3.0")]],
        ),
        ('v == semver("2.3.0+build.5")', [[_c("v", "SEMVER_EQ", value="2.3.0")]]),
        ('at < date("2024-01-01")', [[_c("at", "DATE_BEFORE", value=DAY)]]),
        ('at > date("2024-01-01T07:00:00+07:00")', [[_c("at", "DATE_AFTER", value=DAY)]]),
        ('at >= date("2024-01-01")', [[_c("at", "DATE_BEFORE", value=DAY, inv=True), AT_IS_DATE]]),
        (
            'at == date("2024-01-01")',
            [
                [
                    _c("at", "DATE_BEFORE", value=DAY, inv=True),
                    _c("at", "DATE_AFTER", value=DAY, inv=True),
                    AT_IS_DATE,
                ]
            ],
        ),
        (
            'age >= 18 and (country == "TH" or plan == "pro")',
            [
                [_c("age", "NUM_GTE", value="18"), _c("country", "IN", "TH")],
                [_c("age", "NUM_GTE", value="18"), _c("plan", "IN", "pro")],
            ],
        ),
        (
            "not (age < 18 or age > 65)",
            [[_c("age", "NUM_GTE", value="18"), _c("age", "NUM_LTE", value="65")]],
        ),
        ('country == "TH" or country == "TH"', [[_c("country", "IN", "TH")]]),
    ],
)
def test_a_rule_becomes_these_strategies(text: str, terms: list[list[Constraint]]) -> None:
    assert rule_terms(parse(text)) == [tuple(t) for t in terms]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('country != "TH"', "would match a context without the attribute"),
        ('not country == "TH"', "would match a context without the attribute"),
        ('country not in ["TH"]', "would match a context without the attribute"),
        ('not country ends_with "H"', "would match a context without the attribute"),
        ("beta != true", "would match a context without the attribute"),
        ('email contains ""', "no empty string"),
        ("n < 1e300", "numbers within"),
        ('plan in ["", "pro"]', "no empty string"),
        ('at < date("2024-01-01T00:00:00.0005Z")', "to the millisecond"),
        ('v > semver("18446744073709551616.0.0")', "up to 2"),
        ('currentTime == "x"', "fill in currentTime"),
        ('environment == "production"', "fill in environment"),
        (
            " and ".join(f'(a{i} == "x" or b{i} == "y")' for i in range(5)),
            f"over {MAX_STRATEGIES} Unleash strategies",
        ),
        (
            "not (" + " and ".join(f"a{i} >= 1" for i in range(31)) + ")",
            f"over {MAX_STRATEGIES} Unleash strategies",
        ),
    ],
)
def test_what_unleash_cannot_say_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        rule_terms(parse(text))


def test_the_constraints_are_what_the_admin_api_takes() -> None:
    assert _c("c", "IN", "TH").to_json() == {
        "contextName": "c",
        "operator": "IN",
        "values": ["TH"],
        "inverted": False,
        "caseInsensitive": False,
    }
    assert _c("a", "NUM_GTE", value="18", inv=True).to_json()["value"] == "18"


def test_each_ring_is_joined_with_the_rollouts_audience() -> None:
    strategies = ring_strategies(
        parse('country == "TH"'), [(parse('plan == "pro" or age > 60'), 100), (None, 5)]
    )
    assert [(s.ring, s.percent, s.constraints) for s in strategies] == [
        (0, 100, (_c("country", "IN", "TH"), _c("plan", "IN", "pro"))),
        (0, 100, (_c("country", "IN", "TH"), _c("age", "NUM_GT", value="60"))),
        (1, 5, (_c("country", "IN", "TH"),)),
    ]


PLAN: dict[str, Any] = {
    "limits": {"error_rate": 0.01},
    "backend": {"unleash": {"feature": "checkout"}},
    "audience": 'country in ["TH", "VN"]',
    "stages": [
        {"audience": 'plan == "staff"', "percent": 100},
        {"audience": 'app_version >= semver("2.3.0")', "percent": 10},
        {"percent": 50},
        {"percent": 100},
    ],
}


def test_a_ring_plan_unleash_can_serve_validates() -> None:
    assert parse_plan(PLAN).targeted


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"audience": 'appName == "shop"'}, "audience: Unleash cannot serve this rule"),
        (
            {"stages": [{"audience": 'at <= date("2024-01-01T00:00:00.5001Z")', "percent": 50}]},
            r"stages\.0\.audience: .*millisecond",
        ),
        (
            {
                "stages": [
                    {"audience": " or ".join(f'a == "{i}{j}"' for j in range(8)), "percent": 10 * i}
                    for i in range(1, 5)
                ]
            },
            "the rings need 32 Unleash strategies",
        ),
    ],
)
def test_a_ring_plan_unleash_cannot_serve_is_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_plan({**PLAN, **change})
