"""Restoring a flag to the state after a decision: the commands proposed, or why none can."""

from __future__ import annotations

import pytest

from controller.core.drafting import (
    FlagNow,
    FlagThen,
    RestorePlan,
    RestoreRefusal,
    SegmentState,
    plan_restore,
    segments_of,
)
from controller.core.rollouts import Plan
from controller.core.wire import JsonObject

PLAN = Plan.model_validate(
    {
        "stages": [{"percent": 1}, {"percent": 10}, {"percent": 50}, {"percent": 100}],
        "audience": 'country in segment("eu")',
    }
)
EU: JsonObject = {"attribute": "country", "op": "in", "value": ["de", "fr"]}
EU_WIDE: JsonObject = {"attribute": "country", "op": "in", "value": ["de", "fr", "it"]}


def _then(phase: str | None = "running", stage: int | None = 1, rollout: str = "r1") -> FlagThen:
    return FlagThen("d-1", rollout, phase, stage)


def _now(phase: str = "running", stage: int = 1, rollout: str = "r1") -> FlagNow:
    return FlagNow(True, rollout, phase, stage, PLAN)


def _summary(result: RestorePlan | RestoreRefusal) -> list[tuple[str, int | None, str | None]]:
    assert isinstance(result, RestorePlan), result
    return [(s.action, s.expect_stage, s.expect_rollout_id) for s in result.steps]


@pytest.mark.parametrize(
    ("then", "now", "want"),
    [
        (_then(stage=1), _now(stage=1), []),  # already so
        (_then(stage=3), _now(stage=1), [("promote", 1, "r1"), ("promote", 2, "r1")]),
        (  # paused behind: resumed, promoted, left running
            _then(stage=2),
            _now("paused", stage=1),
            [("resume", 1, "r1"), ("promote", 1, "r1")],
        ),
        (  # paused then: promoted and paused again
            _then("paused", stage=2),
            _now(stage=1),
            [("promote", 1, "r1"), ("pause", None, "r1")],
        ),
        (_then("paused", stage=1), _now(stage=1), [("pause", 1, "r1")]),
        (_then(stage=1), _now("paused", stage=1), [("resume", 1, "r1")]),
        (_then("paused", stage=1), _now("paused", stage=1), []),
        (  # ahead of it: aborted, started again and promoted to that stage
            _then(stage=1),
            _now(stage=3),
            [("abort", 3, "r1"), ("start", None, None), ("promote", 0, None)],
        ),
        (  # the rollout ended since: started again and promoted to that stage
            _then(stage=2),
            _now("rolled_back", stage=2),
            [("start", None, None), ("promote", 0, None), ("promote", 1, None)],
        ),
        (  # paused then, ahead now: the new rollout paused again at that stage
            _then("paused", stage=0),
            _now(stage=3),
            [("abort", 3, "r1"), ("start", None, None), ("pause", None, None)],
        ),
        (_then("completed", 3), _now(stage=2), [("promote", 2, "r1")]),
        (_then("killed", 1), _now(stage=2), [("kill", 2, "r1")]),
        (_then("killed", 1), _now("killed", 1), []),
        (_then("rolled_back", 1), _now("paused", 2), [("rollback", 2, "r1")]),
    ],
)
def test_the_commands_that_bring_the_flag_back(
    then: FlagThen, now: FlagNow, want: list[tuple[str, int | None, str | None]]
) -> None:
    assert _summary(plan_restore(then, now)) == want


def test_a_rollout_replaced_since_is_started_again_with_its_own_plan() -> None:
    then = FlagThen("d-1", "r1", "running", 2, PLAN)
    result = plan_restore(then, FlagNow(True, "r2", "paused", 0, None))
    assert _summary(result) == [
        ("abort", 0, "r2"),
        ("start", None, None),
        ("promote", 0, None),
        ("promote", 1, None),
    ]
    assert isinstance(result, RestorePlan)
    assert result.steps[1].plan == PLAN


def test_a_restart_keeps_the_plans_stages_and_says_them_as_status_does() -> None:
    # Given a rollout at its second stage (10%) then, at its fourth now
    result = plan_restore(_then(stage=1), _now(stage=3))
    assert isinstance(result, RestorePlan)
    abort, start, promote = result.steps
    # Then the new rollout has the whole plan, its stages numbered as before
    assert start.plan == PLAN
    assert [s.percent for s in PLAN.stages] == [1, 10, 50, 100]
    # ...and each step names stages from 1, as status does
    assert abort.change == "rollout r1: running at stage 4 → aborted"
    assert start.change == "new rollout of the same plan at stage 1 (1%)"
    assert promote.change == "the new rollout: stage 1 → stage 2 (10%)"
    # ...each promote of the new rollout held to it once its start names it
    assert (promote.new_rollout, promote.expect_stage) == (True, 0)


@pytest.mark.parametrize(
    ("then", "now", "said"),
    [
        (_then(stage=3), _now(stage=1), ["rollout r1: stage 2 → stage 3", "stage 3 → stage 4"]),
        (_then("killed", 1), _now(stage=2), ["rollout r1: running at stage 3 → killed"]),
    ],
)
def test_steps_name_stages_from_1(then: FlagThen, now: FlagNow, said: list[str]) -> None:
    result = plan_restore(then, now)
    assert isinstance(result, RestorePlan)
    assert all(text in step.change for text, step in zip(said, result.steps, strict=True))


@pytest.mark.parametrize(
    ("then", "now", "why"),
    [
        (_then(), FlagNow(False), "its plan is not known here"),
        (_then("completed", 3), FlagNow(False), "its plan is not known here"),
        (_then("killed", 1), FlagNow(False), "nothing to kill"),
        (_then(None), _now(), "records no state after it"),
        (_then(stage=1), _now(stage=3, rollout="r2"), "rollout r1 is no longer the flag's"),
        (_then(stage=1), FlagNow(True, "r1", "running", 3, None), "plan is not known"),
        (_then("pending", None), _now(), "cannot be brought back"),
        (_then("completed", 3), _now("aborted", 3), "not started again"),
        (_then("killed", 1), _now("completed", 3), "nothing to kill"),
        (_then(stage=7), _now("aborted", 2), "stage 8 is not in the rollout's plan (of 4"),
    ],
)
def test_a_state_commands_cannot_bring_back_is_refused_with_the_reason(
    then: FlagThen, now: FlagNow, why: str
) -> None:
    result = plan_restore(then, now)
    assert isinstance(result, RestoreRefusal), result
    assert why in result.reason


GONE = SegmentState(exists=False)
RULE = SegmentState(exists=True, rule=EU)
WIDE = SegmentState(exists=True, rule=EU_WIDE)
IDS = SegmentState(exists=True, sha256="a" * 64)
OTHER_IDS = SegmentState(exists=True, sha256="b" * 64)


@pytest.mark.parametrize(
    ("then", "now", "want"),
    [
        (RULE, RULE, []),
        (RULE, WIDE, [("put", EU)]),  # its rule then put back
        (RULE, GONE, [("put", EU)]),  # deleted since: put back
        (GONE, WIDE, [("delete", None)]),  # created since: deleted
        (GONE, GONE, []),
        (IDS, IDS, []),  # an id list unchanged needs nothing
    ],
)
def test_segments_come_back_as_they_were_before_the_flag(
    then: SegmentState, now: SegmentState, want: list[tuple[str, object]]
) -> None:
    result = plan_restore(_then(stage=2), _now(stage=1), {"eu": (then, now)})
    assert isinstance(result, RestorePlan), result
    segment_steps = [(s.action, s.rule) for s in result.steps if s.kind == "segment_command"]
    assert segment_steps == want
    assert all(s.segment == "eu" for s in result.steps if s.kind == "segment_command")
    assert result.steps[-1].action == "promote"  # segments first, then the flag


@pytest.mark.parametrize(
    ("then", "now", "why"),
    [
        (IDS, OTHER_IDS, "its ids then are not known"),
        (IDS, GONE, "its ids then are not known"),
        (SegmentState(exists=False, known=False), RULE, "its content then is unknown"),
    ],
)
def test_a_segment_whose_content_then_is_unknown_refuses_the_restore(
    then: SegmentState, now: SegmentState, why: str
) -> None:
    result = plan_restore(_then(stage=2), _now(stage=1), {"eu": (then, now)})
    assert isinstance(result, RestoreRefusal), result
    assert why in result.reason
    assert "segment eu" in result.reason


def test_a_segment_change_is_told_in_the_rules_text() -> None:
    result = plan_restore(_then(stage=1), _now(stage=1), {"eu": (RULE, WIDE)})
    assert isinstance(result, RestorePlan)
    assert result.steps[0].change == (
        'segment eu: rule country in ["de", "fr", "it"] → rule country in ["de", "fr"]'
    )


def test_the_segments_a_plan_names_are_found_in_its_audiences() -> None:
    assert segments_of(PLAN) == ["eu"]


@pytest.mark.parametrize(
    ("then", "want"),
    [
        (
            FlagThen("d-1", "r1", "running", 2, PLAN),
            [("start", None), ("promote", 0), ("promote", 1)],
        ),
        (FlagThen("d-1", "r1", "paused", 0, PLAN), [("start", None), ("pause", None)]),
        (FlagThen("d-1", "r1", "completed", 3, PLAN), [("start", None), ("promote", 0)]),
    ],
)
def test_a_flag_the_controller_does_not_know_is_started_again_with_its_plan(
    then: FlagThen, want: list[tuple[str, int | None]]
) -> None:
    """A store restored empty (or the flag deleted): its rollout is started again with the
    plan it had and brought to the stage, or the end, it was at."""
    result = plan_restore(then, FlagNow(False))
    assert isinstance(result, RestorePlan), result
    assert [(s.action, s.expect_stage) for s in result.steps] == want
    assert all(s.new_rollout for s in result.steps[1:])
    assert result.steps[0].plan == PLAN
    assert result.steps[-1].to_end is (then.phase == "completed")
