"""Ring plans in the drafting form: read, made a plan that widens, linted and previewed."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.drafting.ring_form import (
    RING_LIMITS,
    DraftRing,
    plan_findings,
    review_rings,
    ring_findings,
    ring_plan,
    ring_preview,
    rings_in,
    rings_schema,
)
from controller.core.drafting.rule_lint import load_catalogue
from controller.core.drafting.templates import FROM_MODEL, plan_yaml
from controller.core.rollouts.plan import load_plan
from controller.core.rules.targeting import MAX_RINGS
from controller.core.rules.text import parse

CATALOGUE = load_catalogue(
    "attributes: {user_id: string, country: string, plan: string, app_version: semver}\n"
    "segments: [staff, beta]\n"
)


def rule(attribute: str, op: str, value: object, match: str = "all") -> dict[str, Any]:
    return {"match": match, "conditions": [{"attribute": attribute, "op": op, "value": value}]}


STAFF = rule("user_id", "in segment", "staff")
THAI = rule("country", "==", "TH")
EVERYONE = "everyone"


def rings(*parts: tuple[object, object]) -> dict[str, Any]:
    return {"rings": [{"audience": a, "percent": p} for a, p in parts]}


def ring(text: str | None, percent: float) -> DraftRing:
    return DraftRing(None if text is None else parse(text), percent)


def test_the_schema_takes_everyone_or_a_flat_rule_and_bounds_the_rings() -> None:
    schema = rings_schema(CATALOGUE)
    listed = schema["properties"]["rings"]
    assert listed["minItems"] == 1
    assert listed["maxItems"] == MAX_RINGS
    everyone, form = listed["items"]["properties"]["audience"]["anyOf"]
    assert everyone == {"type": "string", "enum": ["everyone"]}
    attribute = form["properties"]["conditions"]["items"]["properties"]["attribute"]
    assert attribute["enum"] == ["app_version", "country", "plan", "user_id"]


@pytest.mark.parametrize(
    ("data", "read"),
    [
        (
            rings((STAFF, 100), (THAI, 25), (EVERYONE, 100)),
            [
                ring('user_id in segment("staff")', 100),
                ring('country == "TH"', 25),
                ring(None, 100),
            ],
        ),
        (
            rings(('plan in ["pro"]', 5), (EVERYONE, 50)),
            [ring('plan in ["pro"]', 5), ring(None, 50)],
        ),
        (
            rings((rule("app_version", ">=", "2.3.0"), 10)),
            [ring('app_version >= semver("2.3.0")', 10)],
        ),
    ],
)
def test_rings_are_read_from_the_flat_form_the_text_form_or_everyone(
    data: dict[str, Any], read: list[DraftRing]
) -> None:
    assert rings_in(data, CATALOGUE) == read


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1], 'the draft needs {"rings": [...]}'),
        ({"rings": "staff"}, 'the draft needs {"rings": [...]}'),
        ({"rings": []}, "the draft has no rings"),
        (rings(*[(EVERYONE, 100)] * 21), "the draft has 21 rings, at most 20"),
        ({"rings": [{"audience": EVERYONE}]}, "ring 1: not an object of audience and percent"),
        ({"rings": [[EVERYONE, 5]]}, "ring 1: not an object"),
        (rings((EVERYONE, 0)), "ring 1: the percent must be from 0.1 to 100, got 0"),
        (rings((STAFF, 100), (EVERYONE, 101)), "ring 2: the percent must be from 0.1 to 100"),
        (rings((EVERYONE, -5)), "got -5"),
        # Below the schema's 0.1%: a ring that small sees too few units to judge
        (rings((EVERYONE, 1e-9), (EVERYONE, 100)), "ring 1: the percent must be from 0.1"),
        (rings((STAFF, 100), (EVERYONE, 0.05)), "ring 2: the percent must be from 0.1 to 100"),
        (rings((EVERYONE, True)), "ring 1: the percent is not a number"),
        (rings((EVERYONE, "50")), "the percent is not a number"),
        (rings((EVERYONE, float("inf"))), "to 100, got inf"),
        (rings((None, 5)), 'ring 1: the audience is neither "everyone" nor a rule'),
        (rings((["staff"], 5)), "neither"),
        (rings(("Everyone", 5)), "ring 1: the audience does not parse: line 1"),
        (rings(('country == "TH" and', 5)), "ring 1: the audience does not parse"),
        (rings((rule("country", "~", "TH"), 5)), "ring 1: not a valid rule: Input should be"),
        (rings((rule("app_version", ">=", "two"), 5)), "not a semantic version"),
        (rings(({"match": "all", "conditions": []}, 5)), "ring 1: the draft needs match all"),
    ],
)
def test_a_reply_that_is_no_rings_says_why(data: object, reason: str) -> None:
    why = rings_in(data, CATALOGUE)
    assert isinstance(why, str)
    assert reason in why, why


@pytest.mark.parametrize(
    ("drafted", "reason"),
    [
        ([ring('country == "TH"', 25), ring('country == "TH"', 25)], "ring 2 repeats ring 1"),
        ([ring(None, 5), ring(None, 50), ring(None, 5)], "ring 3 repeats ring 1"),
        (
            [ring('country == "TH"', 25), ring('country == "TH"', 5)],
            "ring 2: a stage with the same audience as an earlier one must serve more of it,"
            " got 5 after 25",
        ),
        (
            [ring(None, 5), ring('user_id in segment("staff")', 100)],
            "ring 2: ring 1 already speaks to everyone; no later stage may narrow the audience",
        ),
    ],
)
def test_rings_that_do_not_widen_make_no_plan(drafted: list[DraftRing], reason: str) -> None:
    assert ring_plan(drafted) == reason


def test_rings_past_the_plans_audience_size_make_no_plan() -> None:
    long = "[" + ", ".join(f'"{"c" * 200}{n}"' for n in range(5)) + "]"
    drafted = [ring(f'country in {long} and plan == "{n}"', 5) for n in range(20)]
    plan = ring_plan(drafted)
    assert isinstance(plan, str)
    assert "characters of JSON, at most 16384" in plan


def test_the_plan_is_the_rings_as_stages_and_reads_back_from_its_yaml() -> None:
    drafted = [
        ring('user_id in segment("staff")', 100),
        ring('plan in ["pro", "enterprise"] and country == "TH"', 25),
        ring(None, 10),
        ring(None, 100),
    ]
    plan = ring_plan(drafted)
    assert not isinstance(plan, str)
    assert [(s.audience, s.percent) for s in plan.stages] == [
        (r.audience, r.percent) for r in drafted
    ]
    assert plan.limits == RING_LIMITS  # a ring at 100% before the last has no control
    assert plan.stages[-1].min_duration.total_seconds() == 0
    assert all(s.min_duration.total_seconds() == 3600 for s in plan.stages[:-1])
    text = plan_yaml(plan, ["a draft"], from_model="stages")
    assert load_plan(text) == plan
    stage_lines = [line for line in text.splitlines() if line.startswith("  - {")]
    assert [line.endswith(FROM_MODEL) for line in stage_lines] == [True] * 4 + [False] * 2
    assert "audience: user_id in segment(" in text  # the text form, not the JSON form
    assert not text.splitlines()[1].endswith(FROM_MODEL)  # the name is not the model's


def test_limits_only_where_a_ring_before_the_last_serves_all_of_its_audience() -> None:
    plan = ring_plan([ring('country == "TH"', 25), ring(None, 100)])
    assert not isinstance(plan, str)
    assert plan.limits is None


@pytest.mark.parametrize(
    ("drafted", "found"),
    [
        ([ring('user_id in segment("staff")', 100), ring(None, 100)], []),
        (
            [ring('contry == "TH"', 5), ring(None, 100)],
            ["error: ring 1: unknown attribute 'contry'"],
        ),
        (
            [ring('country == "TH" and country == "VN"', 5), ring(None, 100)],
            ["error: ring 1: country cannot be two values at once"],
        ),
        (
            [ring('user_id in segment("staf")', 100), ring(None, 25)],
            [
                "error: ring 1: unknown segment 'staf'",
                "warning: the last ring serves 25% of everyone",
            ],
        ),
        (
            [ring('country == "TH"', 100)],
            ['warning: the last ring serves 100% of country == "TH"'],
        ),
        ([ring(None, 100)], ["warning: one ring of everyone"]),
    ],
)
def test_each_rings_rule_is_linted_and_the_rings_read_as_a_whole(
    drafted: list[DraftRing], found: list[str]
) -> None:
    said = [f"{f.severity}: {f.message}" for f in ring_findings(drafted, CATALOGUE)]
    assert len(said) == len(found), said
    for text, start in zip(said, found, strict=True):
        assert text.startswith(start), said


CONTEXTS = [
    {"user_id": "u1", "country": "TH", "plan": "pro"},
    {"user_id": "u2", "country": "TH", "plan": "free"},
    {"user_id": "u3", "country": "VN", "plan": "pro"},
    {"user_id": "u4", "plan": "free"},
]


def test_the_preview_counts_who_each_ring_newly_reaches_and_in_all() -> None:
    drafted = [
        ring('plan == "pro" and country == "TH"', 100),
        ring('country == "TH"', 25),
        ring(None, 10),
        ring(None, 100),
    ]
    seen = [(p.newly, p.reached, p.unknown) for p in ring_preview(drafted, CONTEXTS)]
    assert seen == [(1, 1, 0), (1, 2, 1), (2, 4, 0), (0, 4, 0)]


@pytest.mark.parametrize(
    ("drafted", "warnings"),
    [
        ([ring('country == "TH"', 5), ring(None, 100)], []),
        (
            [ring('plan == "pro"', 5), ring('plan == "pro" and country == "VN"', 25)],
            ["ring 2 reaches no example context an earlier ring did not"],
        ),
        (
            [ring('plan in ["pro", "free"]', 5), ring(None, 100)],
            [
                "ring 1 reaches every example context: wider than asked?",
                "ring 2 reaches no example context an earlier ring did not",
            ],
        ),
        # A segment is not looked up: no context is surely reached or missed.
        ([ring('user_id in segment("staff")', 100), ring(None, 100)], []),
    ],
)
def test_the_preview_warns_of_a_ring_that_reaches_no_one_new_or_everyone(
    drafted: list[DraftRing], warnings: list[str]
) -> None:
    draft = review_rings(drafted, CATALOGUE, CONTEXTS)
    assert not isinstance(draft, str)
    linted = plan_findings(draft.plan)
    said = [f.message for f in draft.findings if f.message.startswith("ring ") and f not in linted]
    assert said == warnings
    assert draft.total == 4


def test_review_without_contexts_previews_nothing_and_says_why_rings_make_no_plan() -> None:
    draft = review_rings([ring(None, 5), ring(None, 100)], CATALOGUE, None)
    assert not isinstance(draft, str)
    assert draft.previews is None
    assert [f"{f.severity}: {f.message}" for f in draft.findings] == [
        "warning: ring 2: this stage goes from 5% straight to 100%; a regression that shows"
        " only at scale reaches every unit at once: add a stage of at least 25% before everyone"
    ]
    assert review_rings([ring(None, 5), ring(None, 5)], CATALOGUE, None) == "ring 2 repeats ring 1"


@pytest.mark.parametrize(
    ("drafted", "found"),
    [
        ([ring(None, 25), ring(None, 100)], []),
        ([ring('user_id in segment("staff")', 100), ring(None, 100)], []),
        (
            [ring(None, 0.1), ring(None, 100)],
            ["warning: ring 2: this stage goes from 0.1% straight to 100%"],
        ),
        (
            [ring('user_id in segment("staff")', 100), ring('country == "TH"', 5), ring(None, 100)],
            ["warning: ring 3: this stage goes from 5% straight to 100%"],
        ),
        (
            [ring('country == "TH"', 100)],
            [
                "error: ring 1: at 100% every unit gets the feature and the control arm stays"
                " empty",
                'warning: the last ring serves 100% of country == "TH"',
                "warning: ring 1: the only stage serves 100%",
            ],
        ),
    ],
)
def test_the_rings_plan_gets_the_review_plan_validate_gives(
    drafted: list[DraftRing], found: list[str]
) -> None:
    draft = review_rings(drafted, CATALOGUE, None)
    assert not isinstance(draft, str)
    said = [f"{f.severity}: {f.message}" for f in draft.findings]
    assert len(said) == len(found), said
    for text, start in zip(said, found, strict=True):
        assert text.startswith(start), said
