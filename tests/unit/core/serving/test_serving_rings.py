"""A ring plan served by Unleash: what is written, what is read back, and a person's change."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.core.common.message_fields import (
    FLAG_PARAMETER,
    TARGETING_PARAMETER,
    VERSION_PARAMETER,
)
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.rules.unleash_constraints import Constraint
from controller.core.serving.reads import Strategy, would_serve
from controller.core.serving.rings import Owned, constraint_of
from controller.core.serving.serving import Applied, Target, Verdict, desired, reconcile

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TARGET = Target("checkout", "default", "production", "userId", targeted=True)
PLAN = parse_plan(
    {
        "limits": {"error_rate": 0.01},
        "backend": {"unleash": {"feature": "checkout"}},
        "audience": 'country == "TH"',
        "stages": [
            {"audience": 'plan == "staff"', "percent": 100},
            {"audience": 'app_version >= semver("2.3.0")', "percent": 10},
            {"percent": 50},
            {"percent": 100},
        ],
        "watch": {"duration": "1h", "holdback_percent": 5},
    }
)
TH = Constraint("country", "IN", ("TH",))
STAFF = Constraint("plan", "IN", ("staff",))
GT = Constraint("app_version", "SEMVER_GT", value="2.3.0")
EQ = Constraint("app_version", "SEMVER_EQ", value="2.3.0")


def rollout(stage: int, phase: Phase = Phase.RUNNING, version: int = 3) -> Rollout:
    return Rollout(
        flag="checkout",
        rollout_id="r1",
        plan=PLAN,
        phase=phase,
        stage=stage,
        stage_started_at=NOW,
        salt="s",
        flag_version=version,
        started_at=NOW,
        updated_at=NOW,
    )


def served(stage: int, version: int = 3) -> list[Strategy]:
    """The strategies the controller writes at ``stage``, as Unleash answers them."""
    want = desired(rollout(stage, version=version), TARGET)
    assert want is not None
    assert want.specs is not None
    return [
        Strategy(
            name="flexibleRollout",
            id=f"s{i}",
            parameters={
                "rollout": str(spec.percent),
                "stickiness": "userId",
                "groupId": "checkout",
                FLAG_PARAMETER: "checkout",
                VERSION_PARAMETER: str(version),
                **({TARGETING_PARAMETER: want.targeting or ""} if i == 0 else {}),
            },
            constraints=len(spec.constraints),
            rules=spec.constraints,
        )
        for i, spec in enumerate(want.specs)
    ]


@pytest.mark.parametrize(
    ("stage", "strategies"),
    [
        (0, [(100, (TH, STAFF))]),
        (1, [(100, (TH, STAFF)), (10, (TH, GT)), (10, (TH, EQ))]),
        (2, [(100, (TH, STAFF)), (10, (TH, GT)), (10, (TH, EQ)), (50, (TH,))]),
        (3, [(100, (TH, STAFF)), (10, (TH, GT)), (10, (TH, EQ)), (100, (TH,))]),
    ],
)
def test_each_stage_is_served_by_its_rings_strategies(
    stage: int, strategies: list[tuple[int, tuple[Constraint, ...]]]
) -> None:
    want = desired(rollout(stage), TARGET)
    assert want is not None
    assert want.specs is not None
    assert [(s.percent, s.constraints) for s in want.specs] == strategies
    assert want.percent is None
    assert want.shape


def test_a_watch_holdback_lowers_only_the_last_ring() -> None:
    watching = rollout(3).model_copy(update={"watch_until": NOW, "percent": 95.0})
    want = desired(watching, TARGET)
    assert want is not None
    assert want.specs is not None
    assert [s.percent for s in want.specs] == [100, 10, 10, 95]


def test_the_strategies_written_read_back_as_what_was_wanted() -> None:
    want = desired(rollout(2), TARGET)
    actual = would_serve(True, served(2), TARGET)
    assert actual == want
    assert [o.id for o in actual.owned] == ["s0", "s1", "s2", "s3"]
    assert want is not None
    assert reconcile(rollout(2), want, actual, Applied("r1", applied=want), TARGET) == (
        Verdict.NOTHING,
        [],
    )


def _edit(index: int, **change: Any) -> Callable[[list[Strategy]], list[Strategy]]:
    def edit(strategies: list[Strategy]) -> list[Strategy]:
        out = list(strategies)
        out[index] = dataclasses.replace(out[index], **change)
        return out

    return edit


def _params(index: int, **change: str) -> Callable[[list[Strategy]], list[Strategy]]:
    def edit(strategies: list[Strategy]) -> list[Strategy]:
        out = list(strategies)
        out[index] = dataclasses.replace(out[index], parameters={**out[index].parameters, **change})
        return out

    return edit


TAMPERING: list[tuple[str, Callable[[list[Strategy]], list[Strategy]]]] = [
    ("a constraint's value changed", _edit(0, rules=(TH, Constraint("plan", "IN", ("pro",))))),
    ("a constraint removed", _edit(1, rules=(GT,), constraints=1)),
    ("a constraint inverted", _edit(3, rules=(Constraint("country", "IN", ("TH",), None, True),))),
    ("a segment added", _edit(2, segments=1)),
    ("a strategy disabled", _edit(3, disabled=True)),
    ("a ring's percent changed", _params(1, rollout="40")),
    ("stickiness changed", _params(0, stickiness="sessionId")),
    ("the rings for the SDK edited", _params(0, rcTargeting="[null, []]")),
    ("the rings for the SDK copied", _params(2, rcTargeting="[null, []]")),
    ("a strategy deleted", lambda s: s[:3]),
    ("a copy added to the group", lambda s: [*s, dataclasses.replace(s[3], id="s9")]),
]


@pytest.mark.parametrize(("what", "tamper"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_any_change_to_any_of_the_controllers_strategies_is_drift(
    what: str, tamper: Callable[[list[Strategy]], list[Strategy]]
) -> None:
    want = desired(rollout(2), TARGET)
    assert want is not None
    actual = would_serve(True, tamper(served(2)), TARGET)
    verdict, changes = reconcile(rollout(2), want, actual, Applied("r1", applied=want), TARGET)
    assert verdict is Verdict.DRIFT, what
    assert "strategies of checkout were changed" in changes[0]


def test_another_strategy_beside_the_group_is_drift_and_named() -> None:
    want = desired(rollout(2), TARGET)
    assert want is not None
    other = Strategy(name="default", id="d1")
    actual = would_serve(True, [*served(2), other], TARGET)
    verdict, changes = reconcile(rollout(2), want, actual, Applied("r1", applied=want), TARGET)
    assert verdict is Verdict.DRIFT
    assert changes == [
        "a default strategy (d1) was added beside the controller's, serving everyone"
    ]


def test_the_next_stage_is_a_write_not_drift_and_a_half_made_write_is_no_person() -> None:
    before, after = desired(rollout(1), TARGET), desired(rollout(2, version=4), TARGET)
    assert before is not None
    assert after is not None
    record = Applied("r1", applied=before)
    assert reconcile(
        rollout(2, version=4), after, would_serve(True, served(1), TARGET), record, TARGET
    ) == (
        Verdict.WRITE,
        [],
    )
    # a crash after two of the new stage's strategies were written: the intent covers it
    half = [*served(2, version=4)[:2], *served(1)[2:]]
    midway = Applied("r1", applied=before, intent=after)
    verdict, _ = reconcile(
        rollout(2, version=4), after, would_serve(True, half, TARGET), midway, TARGET
    )
    assert verdict is Verdict.WRITE  # written again on the next pass, never taken for a person
    assert Applied.from_json(midway.to_json()) == midway


@pytest.mark.parametrize(
    ("doc", "constraint"),
    [
        (
            {"contextName": "c", "operator": "IN", "values": ["TH"], "inverted": False},
            Constraint("c", "IN", ("TH",)),
        ),
        (
            {"contextName": "a", "operator": "NUM_GTE", "values": [], "value": "18"},
            Constraint("a", "NUM_GTE", value="18"),
        ),
        (
            {"contextName": "c", "operator": "IN", "values": ["th"], "caseInsensitive": True},
            Constraint("c", "IN?caseInsensitive", ("th",)),
        ),
        ("not a constraint", Constraint("", "?")),
        ({"contextName": 5, "operator": "IN"}, Constraint("", "?")),
    ],
)
def test_a_constraint_is_read_as_unleash_answers_it(doc: object, constraint: Constraint) -> None:
    assert constraint_of(doc) == constraint


def test_the_owned_strategies_carry_their_ids_for_writes_in_place() -> None:
    actual = would_serve(True, served(1), TARGET)
    assert actual.owned[0] == Owned("s0", (TH, STAFF))
