"""Write ``tests/vectors/audience.json``: audience rule evaluation vectors for every client.

Run ``python tests/vectors/audience_generate.py`` to rewrite the file and
``python tests/vectors/audience_generate.py --check`` to exit 1 when it differs
from what this script makes; ``tests/unit/core/rules/test_audience_vectors.py`` runs the
same check.

Each vector is a rule (its JSON form, and its text form), a context, and the
expected three-valued ``truth`` (true, false or null for unknown) and
``match`` (only true matches); the segments it may name are in the header.
The expected values come from the small evaluator written out here over the
JSON form, not from :mod:`controller.core.rules.matching`: the test holds the
controller's evaluator to this one. The first vectors are hand-picked edge
cases (missing attributes, wrong types, case, Unicode, semver pre-releases,
dates and offsets, id-list and rule segments, and/or/not with unknowns); the
rest are random rules over random contexts from a fixed seed.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from tests.vectors import vectorfile

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from controller.core.rules.audience import AudienceRule
from controller.core.rules.text import parse, to_text
from controller.core.rules.values import instant_ns, semver_key

PATH = Path(__file__).with_name("audience.json")
_SEED = 20_261_123
SEGMENTS: dict[str, list[str]] = {
    "beta": ["user-1", "user-2", "user-3", "ユーザー", "café"],
    "staff": ["alice", "bob", "42"],
    "empty": [],
}
"""Id-list segments the vectors may name; ``gone`` is named but unknown, so it is unknown."""
RULE_SEGMENTS: dict[str, str] = {
    "pros": 'plan in ["pro", "enterprise"]',
    "th-adults": 'country == "TH" and age >= 18',
}
"""Rule segments (text form here, JSON form in the file): true for a context their rule is."""

Json = Any


def segment_table() -> dict[str, Json]:
    """The file's ``segments``: an id list, or ``{"rule": JSON form}``, by name."""
    rules = {
        name: {"rule": json.loads(parse(text).to_json())} for name, text in RULE_SEGMENTS.items()
    }
    return {**SEGMENTS, **rules}


# -- the reference evaluator, over the JSON form -----------------------------------------------


def _number(value: Json) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond binary64 is infinite, as JSON.parse reads it
        number = float("inf") if value > 0 else float("-inf")
    return None if number != number else number


def _compare(op: str, actual: Any, literal: Any) -> bool:
    if op in ("==", "!="):
        return bool(actual == literal) is (op == "==")
    below, above = bool(actual < literal), bool(actual > literal)
    return {"<": below, "<=": not above, ">": above, ">=": not below}[op]


def _condition(cond: Json, context: Json) -> bool | None:
    actual, op, value = context.get(cond["attribute"]), cond["op"], cond["value"]
    if isinstance(value, dict) and "segment" in value:
        held = _TABLE.get(value["segment"])
        if not isinstance(actual, str) or held is None:
            return None
        # A rule segment is its rule's truth over the whole context (it names no segment).
        found = actual in held if isinstance(held, list) else truth(held["rule"], context)
        return None if found is None else found is (op == "in")
    if isinstance(value, list):
        if isinstance(value[0], str):
            found = actual in value if isinstance(actual, str) else None
        else:
            number = _number(actual)
            found = None if number is None else number in [float(v) for v in value]
        return None if found is None else found is (op == "in")
    if isinstance(value, dict):
        parse_value = semver_key if "semver" in value else instant_ns
        mine = parse_value(actual) if isinstance(actual, str) else None
        theirs = parse_value(value.get("semver") or value["date"])
        return None if mine is None else _compare(op, mine, theirs)
    if isinstance(value, bool):
        return _compare(op, actual, value) if isinstance(actual, bool) else None
    if isinstance(value, int | float):
        number = _number(actual)
        return None if number is None else _compare(op, number, float(value))
    if not isinstance(actual, str):
        return None
    if op == "starts_with":
        return actual.startswith(value)
    if op == "ends_with":
        return actual.endswith(value)
    return value in actual if op == "contains" else _compare(op, actual, value)


def truth(rule: Json, context: Json) -> bool | None:
    """Kleene's three-valued logic: None is unknown."""
    if "not" in rule:
        inner = truth(rule["not"], context)
        return None if inner is None else not inner
    if "and" in rule or "or" in rule:
        decisive = "and" not in rule  # false decides an and, true decides an or
        parts = [truth(part, context) for part in rule.get("and") or rule["or"]]
        if any(part is decisive for part in parts):
            return decisive
        return None if any(part is None for part in parts) else not decisive
    return _condition(rule, context)


_TABLE = segment_table()

# -- the cases ----------------------------------------------------------------------------------

_NFD = "cafe\u0301"
HAND: list[tuple[str, list[Json]]] = [
    ('country == "TH"', [{"country": "TH"}, {"country": "th"}, {"country": "US"}, {}]),
    (
        'country == "TH"',
        [{"country": None}, {"country": 1}, {"country": ["TH"]}, {"country": True}],
    ),
    ('country != "TH"', [{"country": "US"}, {"country": "TH"}, {}, {"country": 7}]),
    ('not country == "TH"', [{"country": "US"}, {}, {"country": None}]),
    ('name == "café"', [{"name": "café"}, {"name": _NFD}, {"name": "CAFÉ"}]),
    ('name contains "é"', [{"name": "café"}, {"name": _NFD}]),
    ('name starts_with "ユー"', [{"name": "ユーザー"}, {"name": "ユ"}, {"name": ""}]),
    ('name ends_with "😀"', [{"name": "hi 😀"}, {"name": "😀 hi"}, {"name": 5}]),
    ('email contains ""', [{"email": ""}, {"email": "x"}, {}]),
    ("age >= 18", [{"age": 18}, {"age": 17.999}, {"age": "18"}, {"age": True}, {"age": None}]),
    ("age == 30", [{"age": 30}, {"age": 30.0}, {"age": "30"}, {"age": 3e1}]),
    ("n == 9007199254740991", [{"n": 9007199254740991}, {"n": 9007199254740992}]),
    ("n > 0", [{"n": -0.0}, {"n": 1e-300}, {"n": 1e308}, {"n": -1e308}]),
    ("n < 1.5", [{"n": 1.4999999999999998}, {"n": 1.5}, {"n": 10**400}]),
    ("beta == true", [{"beta": True}, {"beta": False}, {"beta": 1}, {"beta": "true"}]),
    ("beta != false", [{"beta": True}, {"beta": False}, {}]),
    ('plan in ["pro", "enterprise"]', [{"plan": "pro"}, {"plan": "Pro"}, {"plan": "free"}, {}]),
    ('plan not in ["pro", "enterprise"]', [{"plan": "pro"}, {"plan": "free"}, {}, {"plan": 1}]),
    (
        "tier in [1, 2, 3.5]",
        [{"tier": 1}, {"tier": 1.0}, {"tier": 3.5}, {"tier": "1"}, {"tier": 4}],
    ),
    ('v >= semver("2.3.0")', [{"v": "2.3.0"}, {"v": "2.3.0-rc.1"}, {"v": "2.10.0"}, {"v": "2.3"}]),
    (
        'v >= semver("2.3.0")',
        [{"v": "v2.3.0"}, {"v": "02.3.0"}, {"v": 2.3}, {"v": "2.3.0+build.7"}],
    ),
    ('v == semver("1.0.0+a")', [{"v": "1.0.0"}, {"v": "1.0.0+b"}, {"v": "1.0.0-0"}]),
    ('v < semver("1.0.0-alpha.1")', [{"v": "1.0.0-alpha"}, {"v": "1.0.0-alpha.beta"}]),
    (
        'v < semver("1.0.0-beta.11")',
        [{"v": "1.0.0-beta.2"}, {"v": "1.0.0-beta"}, {"v": "1.0.0-rc.1"}],
    ),
    ('v > semver("1.0.0-rc.1")', [{"v": "1.0.0"}, {"v": "1.0.0-rc.01"}, {"v": "1.0.0-rc.1.1"}]),
    ('v > semver("99999999999999999999.0.0")', [{"v": "100000000000000000000.0.0"}]),
    (
        'at < date("2024-01-01")',
        [{"at": "2023-12-31"}, {"at": "2024-01-01"}, {"at": "2023-12-31T23:59:59.999999999Z"}],
    ),
    (
        'at < date("2024-01-01")',
        [{"at": "2024-01-01T06:59:59+07:00"}, {"at": "2023-12-31T23:59:59-00:01"}],
    ),
    (
        'at < date("2024-01-01")',
        [{"at": "2023-12-31T23:59:59"}, {"at": "2023-12-31 23:59:59Z"}, {"at": 1}],
    ),
    (
        'at >= date("2024-02-29T12:00:00.5+01:00")',
        [{"at": "2024-02-29T11:00:00.5Z"}, {"at": "2024-02-29T11:00:00.499Z"}],
    ),
    (
        'at > date("2024-01-01")',
        [{"at": "2023-02-29"}, {"at": "2024-13-01"}, {"at": "2024-01-01T24:00:00Z"}],
    ),
    (
        'at == date("2024-01-01")',
        [{"at": "2024-01-01T00:00:00Z"}, {"at": "2024-01-01T00:00:00.000+00:00"}],
    ),
    (
        'user_id in segment("beta")',
        [{"user_id": "user-1"}, {"user_id": "user-9"}, {"user_id": 1}, {}],
    ),
    (
        'user_id in segment("beta")',
        [{"user_id": "ユーザー"}, {"user_id": _NFD}, {"user_id": "USER-1"}],
    ),
    (
        'user_id not in segment("staff")',
        [{"user_id": "alice"}, {"user_id": "carol"}, {"user_id": 42}],
    ),
    ('user_id in segment("gone")', [{"user_id": "user-1"}]),
    ('user_id not in segment("gone")', [{"user_id": "user-1"}]),
    ('user_id in segment("empty")', [{"user_id": "user-1"}]),
    (
        'user_id in segment("pros")',
        [{"user_id": "u", "plan": "pro"}, {"user_id": "u", "plan": "free"}, {"user_id": "u"}],
    ),
    (
        'user_id in segment("pros")',
        [{"plan": "pro"}, {"user_id": 7, "plan": "pro"}, {"user_id": "u", "plan": 1}],
    ),
    (
        'user_id not in segment("pros")',
        [{"user_id": "u", "plan": "pro"}, {"user_id": "u", "plan": "free"}, {"user_id": "u"}],
    ),
    ('team in segment("pros")', [{"team": "t", "plan": "enterprise"}, {"plan": "pro"}]),
    (
        'user_id in segment("th-adults")',
        [
            {"user_id": "u", "country": "TH", "age": 20},
            {"user_id": "u", "country": "US"},
            {"user_id": "u", "country": "TH"},
            {"user_id": "u", "country": "TH", "age": "20"},
        ],
    ),
    (
        'user_id not in segment("th-adults")',
        [{"user_id": "u", "country": "TH", "age": 20}, {"user_id": "u", "age": 20}],
    ),
    (
        'user_id in segment("pros") and user_id in segment("beta")',
        [
            {"user_id": "user-1", "plan": "pro"},
            {"user_id": "user-9", "plan": "pro"},
            {"user_id": "user-1"},
            {"user_id": "user-9"},
        ],
    ),
    (
        'user_id in segment("pros") or user_id in segment("gone")',
        [{"user_id": "u", "plan": "pro"}, {"user_id": "u", "plan": "free"}, {"plan": "pro"}],
    ),
    (
        'not (user_id in segment("th-adults") or user_id in segment("staff"))',
        [
            {"user_id": "alice"},
            {"user_id": "carol", "country": "US"},
            {"user_id": "carol", "country": "TH", "age": 30},
            {"user_id": "carol", "country": "TH"},
        ],
    ),
    ("a == 1 and b == 1", [{"a": 1, "b": 1}, {"a": 1, "b": 2}, {"a": 1}, {"a": 2}, {}]),
    ("a == 1 or b == 1", [{"a": 1}, {"b": 1}, {"a": 2, "b": 2}, {"a": 2}, {}]),
    ("not (a == 1 or b == 1)", [{"a": 2, "b": 2}, {"a": 2}, {"a": 1}, {}]),
    ("not (a == 1 and b == 1)", [{"a": 2}, {"a": 1}, {"a": 1, "b": 1}]),
    ("not not a == 1", [{"a": 1}, {"a": 2}, {}]),
    ("(a == 1 or b == 1) and c == 1", [{"a": 1, "c": 1}, {"b": 1}, {"c": 1, "a": 2}]),
]
"""Rule texts, each with contexts to evaluate it against."""

_ATTRIBUTES: dict[str, list[Json]] = {
    "country": ["TH", "th", "US", "DE", "", "ไทย", 66, None, True],
    "plan": ["pro", "Pro", "enterprise", "free", "pro ", 1],
    "age": [0, 17, 18, 18.0, 18.5, 65, -1, "18", False, None],
    "app_version": ["2.3.0", "2.3.0-rc.1", "2.2.9", "10.0.0", "2.3", "v2.3.0", "2.3.0+b", 230],
    "registered_at": ["2023-12-31", "2024-01-01", "2024-01-01T00:00:00+01:00", "yesterday"],
    "signed_up": ["2024-01-01T00:00:00Z", "2024-06-15T10:30:00.25-05:00", "2024-02-30", 1704067200],
    "email": ["a@example.com", "A@EXAMPLE.COM", "b@example.org", "", "example.com@x", None],
    "beta": [True, False, "true", 1, None],
    "user_id": ["user-1", "user-9", "alice", "42", "ユーザー", "café", _NFD, 42],
}
_LITERALS: dict[str, list[str]] = {
    "country": ['== "TH"', '!= "TH"', 'in ["TH", "US"]', 'not in ["DE"]', 'starts_with "T"'],
    "plan": ['== "pro"', 'in ["pro", "enterprise"]', 'not in ["free"]', 'contains "r"'],
    "age": [">= 18", "< 18", "== 18", "!= 65", "in [18, 65]", "> 17.5", "<= -1"],
    "app_version": ['>= semver("2.3.0")', '< semver("2.3.0")', '== semver("2.3.0")'],
    "registered_at": ['< date("2024-01-01")', '>= date("2024-01-01T00:00:00Z")'],
    "signed_up": ['> date("2024-01-01")', '<= date("2024-06-15T15:30:00.25Z")'],
    "email": ['ends_with "@example.com"', 'contains "example"', '== ""'],
    "beta": ["== true", "!= true", "== false"],
    "user_id": [
        'in segment("beta")',
        'not in segment("staff")',
        'in segment("gone")',
        'in segment("pros")',
        'not in segment("th-adults")',
    ],
}


def _random_rule(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.4:
        attribute = rng.choice(sorted(_LITERALS))
        return f"{attribute} {rng.choice(_LITERALS[attribute])}"
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return f"not ({_random_rule(rng, depth - 1)})"
    parts = [_random_rule(rng, depth - 1) for _ in range(rng.randint(2, 4))]
    return f" {kind} ".join(f"({part})" for part in parts)


def _random_context(rng: random.Random) -> Json:
    # Most attributes present, so that known results outnumber unknown ones.
    present = [name for name in sorted(_ATTRIBUTES) if rng.random() < 0.9]
    return {name: rng.choice(_ATTRIBUTES[name]) for name in present}


def cases() -> list[tuple[str, Json]]:
    """Every (rule text, context) pair the file holds, in its order."""
    out = [(text, context) for text, contexts in HAND for context in contexts]
    rng = random.Random(_SEED)
    for _ in range(300):
        rule = _random_rule(rng, 3)
        out += [(rule, _random_context(rng)) for _ in range(3)]
    return out


def vector(text: str, context: Json) -> Json:
    rule = parse(text)
    wire = json.loads(rule.to_json())
    assert AudienceRule.model_validate(wire) == rule
    result = truth(wire, context)
    return {
        "text": to_text(rule),
        "rule": wire,
        "context": context,
        "truth": result,
        "match": result is True,
    }


def render() -> str:
    """The file's text: a header, then one vector per line."""
    header = {
        "description": (
            "Audience rule evaluation vectors: a rule (JSON form and text form), a context, "
            "the three-valued truth (null is unknown) and match (only true matches). "
            "Segments are named in 'segments': an id list, or {\"rule\": JSON form} whose "
            "truth over the whole context is membership; a segment not there is unknown. "
            "See docs/clients.md, Audience rules."
        ),
        "generator": "tests/vectors/audience_generate.py",
        "segments": segment_table(),
    }
    return vectorfile.render(header, [vector(*case) for case in cases()])


def main(argv: list[str]) -> int:
    return vectorfile.write_or_check(argv, PATH, render, __file__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
