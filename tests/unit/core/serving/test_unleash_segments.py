"""Segments in rings served by Unleash: written inline, or refused with the segment named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controller.core.common.errors import ConfigError
from controller.core.common.message_fields import (
    FLAG_PARAMETER,
    TARGETING_PARAMETER,
    VERSION_PARAMETER,
)
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.planlint import lint
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.rules.held_segments import NO_HELD_SEGMENTS, HeldSegments
from controller.core.rules.text import parse
from controller.core.rules.unleash_constraints import MAX_CONSTRAINT_VALUES, Constraint
from controller.core.rules.unleash_rules import ring_strategies, rule_terms
from controller.core.serving.reads import Strategy, would_serve
from controller.core.serving.serving import Applied, Serving, Target, Verdict, desired, reconcile

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TARGET = Target("checkout", "default", "production", "userId", targeted=True)


def _held(**segments: str | list[str]) -> HeldSegments:
    held = NO_HELD_SEGMENTS
    for number, (name, contents) in enumerate(segments.items(), 1):
        if isinstance(contents, str):
            held = held.with_segment(name, number, ids=None, rule=parse(contents))
        else:
            held = held.with_segment(name, number, ids=frozenset(contents), rule=None)
    return held


HELD = _held(
    beta=["u3", "u1", "u2"],
    staff='email ends_with "@corp.example"',
    thai='country == "TH" and (plan == "pro" or age > 60)',
    mixed='user_id == "u9" or country == "TH"',
    grown=[f"u{i}" for i in range(MAX_CONSTRAINT_VALUES + 1)],
    full=[f"u{i}" for i in range(MAX_CONSTRAINT_VALUES)],
    negative='not email ends_with "@corp.example"',
    empty=[],
)


def _c(name: str, op: str, *values: str, value: str | None = None) -> Constraint:
    return Constraint(name, op, tuple(values), value)


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ('user_id in segment("beta")', [[_c("user_id", "IN", "u1", "u2", "u3")]]),
        (
            'user_id in segment("full")',
            [[_c("user_id", "IN", *sorted(f"u{i}" for i in range(MAX_CONSTRAINT_VALUES)))]],
        ),
        ('email in segment("staff")', [[_c("email", "STR_ENDS_WITH", "@corp.example")]]),
        (
            'country in segment("thai")',
            [
                [_c("country", "IN", "TH"), _c("plan", "IN", "pro")],
                [_c("country", "IN", "TH"), _c("age", "NUM_GT", value="60")],
            ],
        ),
        (
            'user_id in segment("beta") and plan == "pro"',
            [[_c("user_id", "IN", "u1", "u2", "u3"), _c("plan", "IN", "pro")]],
        ),
        (
            'user_id in segment("beta") or email in segment("staff")',
            [
                [_c("user_id", "IN", "u1", "u2", "u3")],
                [_c("email", "STR_ENDS_WITH", "@corp.example")],
            ],
        ),
    ],
)
def test_a_segment_is_written_inline(text: str, terms: list[list[Constraint]]) -> None:
    assert rule_terms(parse(text), HELD) == [tuple(t) for t in terms]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('user_id in segment("grown")', f"'grown' holds {MAX_CONSTRAINT_VALUES + 1} ids"),
        ('user_id in segment("gone")', "segment 'gone' is not held"),
        ('user_id in segment("empty")', "segment 'empty' is empty"),
        ('user_id not in segment("beta")', "negated, it would match a context without"),
        ('not user_id in segment("beta")', "negated, it would match a context without"),
        ('user_id in segment("staff")', "'staff''s rule does not test user_id"),
        ('user_id in segment("mixed")', "'mixed''s rule does not test user_id"),
        ('email in segment("negative")', "segment 'negative': .* would match a context"),
        ('email not in segment("staff")', "segment 'staff': .* would match a context"),
    ],
)
def test_a_segment_unleash_cannot_serve_is_refused_by_name(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        rule_terms(parse(text), HELD)


def test_a_segment_naming_a_segment_is_refused_not_followed() -> None:
    # Segments are checked when saved; a snapshot that holds such a rule still stops here.
    nested = _held(outer='user_id in segment("outer")')
    with pytest.raises(ConfigError, match="names a segment: segments nest once"):
        rule_terms(parse('user_id in segment("outer")'), nested)


def test_before_the_contents_are_read_a_segment_stands_for_one_constraint() -> None:
    assert rule_terms(parse('user_id in segment("beta")')) == [
        (_c("user_id", "IN", "segment:beta"),)
    ]


def test_the_must_show_rings_become_these_strategies() -> None:
    rings = [
        (parse('user_id in segment("staff_ids")'), 100),
        (parse('user_id in segment("beta")'), 100),
        (parse('country == "TH"'), 25),
        (None, 0),
    ]
    held = _held(staff_ids=["s1"], beta=["u1", "u2"])
    strategies = ring_strategies(None, rings, held)
    assert [(s.ring, s.percent, s.constraints) for s in strategies] == [
        (0, 100, (_c("user_id", "IN", "s1"),)),
        (1, 100, (_c("user_id", "IN", "u1", "u2"),)),
        (2, 25, (_c("country", "IN", "TH"),)),
        (3, 0, ()),
    ]


PLAN: dict[str, Any] = {
    "limits": {"error_rate": 0.01},
    "backend": {"unleash": {"feature": "checkout"}},
    "stages": [
        {"audience": 'user_id in segment("staff")', "percent": 100},
        {"audience": 'user_id in segment("beta")', "percent": 100},
        {"audience": 'country == "TH"', "percent": 25},
        {"percent": 100},
    ],
}


def test_a_ring_plan_naming_segments_validates_for_unleash() -> None:
    assert parse_plan(PLAN).targeted


def _rollout(stage: int) -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id="r1",
        plan=parse_plan(PLAN),
        phase=Phase.RUNNING,
        stage=stage,
        stage_started_at=NOW,
        salt="s",
        flag_version=3,
        started_at=NOW,
        updated_at=NOW,
    )


def _read_back(want: Serving) -> Serving:
    """What Unleash answers once ``want`` is written."""
    assert want.specs is not None
    strategies = [
        Strategy(
            name="flexibleRollout",
            id=f"s{i}",
            parameters={
                "rollout": str(spec.percent),
                "stickiness": "userId",
                "groupId": "checkout",
                FLAG_PARAMETER: "checkout",
                VERSION_PARAMETER: "3",
                **({TARGETING_PARAMETER: want.targeting or ""} if i == 0 else {}),
            },
            constraints=len(spec.constraints),
            rules=spec.constraints,
        )
        for i, spec in enumerate(want.specs)
    ]
    return would_serve(True, strategies, TARGET)


def test_a_changed_segment_is_written_again_never_taken_for_a_person_s_change() -> None:
    state = _rollout(1)
    before = desired(state, TARGET, _held(staff=["s1"], beta=["u1"]))
    after = desired(state, TARGET, _held(staff=["s1"], beta=["u1", "u2"]))
    assert before is not None
    assert after is not None
    assert before.shape != after.shape
    actual = _read_back(before)
    assert reconcile(state, after, actual, Applied("r1", applied=before), TARGET) == (
        Verdict.WRITE,
        [],
    )
    assert reconcile(state, after, _read_back(after), Applied("r1", applied=after), TARGET) == (
        Verdict.NOTHING,
        [],
    )


def test_rings_naming_a_segment_not_held_are_not_desired_but_turning_off_still_is() -> None:
    with pytest.raises(ConfigError, match="segment 'beta' is not held"):
        desired(_rollout(1), TARGET, _held(staff=["s1"]))
    killed = _rollout(1).model_copy(update={"phase": Phase.KILLED})
    assert desired(killed, TARGET) == Serving(enabled=False)


def test_rolloutctl_is_told_the_limit_a_segment_served_by_unleash_keeps() -> None:
    warned = [f for f in lint(parse_plan(PLAN)) if "segment" in f.message]
    assert [(f.severity, f.field) for f in warned] == [
        ("warning", "stages[0].audience"),
        ("warning", "stages[1].audience"),
    ]
    assert f"at most {MAX_CONSTRAINT_VALUES} ids" in warned[0].message
    native = {k: v for k, v in PLAN.items() if k != "backend"}
    assert not [f for f in lint(parse_plan(native)) if "segment" in f.message]
