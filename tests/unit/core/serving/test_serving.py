"""What a flag platform should serve for a rollout, and telling a person's change from a lag."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Backend, Stage, UnleashTarget
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.serving.reads import Strategy, whole_number, would_serve
from controller.core.serving.serving import (
    Applied,
    Serving,
    Target,
    Verdict,
    desired,
    drift,
    matches,
    reconcile,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TARGET = Target("new-checkout", "default", "production", "userId")
PLAN = Plan(
    stages=[Stage(percent=p) for p in (1, 25, 100)],
    backend=Backend(unleash=UnleashTarget(feature="new-checkout")),
)


def rollout(phase: Phase = Phase.RUNNING, stage: int = 1, version: int = 3) -> Rollout:
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


def on(percent: int, version: int = 3, stickiness: str = "userId") -> Serving:
    return Serving(enabled=True, percent=percent, stickiness=stickiness, version=version)


@pytest.mark.parametrize(
    ("phase", "want"),
    [
        (Phase.PENDING, None),
        (Phase.RUNNING, on(25)),
        (Phase.PAUSED, on(25)),
        (Phase.COMPLETED, on(100)),
        (Phase.ROLLED_BACK, Serving(enabled=False)),
        (Phase.ABORTED, Serving(enabled=False)),
        (Phase.KILLED, Serving(enabled=False)),
    ],
)
def test_desired_follows_the_phase(phase: Phase, want: Serving | None) -> None:
    assert desired(rollout(phase), TARGET) == want


def test_the_plan_target_takes_the_settings_defaults_for_what_it_leaves_out() -> None:
    target = Target.of(
        UnleashTarget(feature="f", environment="staging"),
        project="p",
        environment="production",
        stickiness="default",
    )
    assert target == Target("f", "p", "staging", "default")


def test_nothing_to_do_when_unleash_serves_what_was_applied() -> None:
    record = Applied("r1", applied=on(25))
    assert reconcile(rollout(), on(25), on(25), record, TARGET) == (Verdict.NOTHING, [])


def test_a_first_sync_writes_whatever_unleash_serves() -> None:
    actual = Serving(enabled=True, percent=70, stickiness="userId", version=None)
    assert reconcile(rollout(), on(25), actual, None, TARGET) == (Verdict.WRITE, [])


def test_a_stage_change_not_applied_yet_is_written_not_taken_for_drift() -> None:
    record = Applied("r1", applied=on(1, version=2))
    assert reconcile(rollout(), on(25), on(1, version=2), record, TARGET) == (Verdict.WRITE, [])


def test_a_write_cut_short_by_a_crash_is_finished_not_taken_for_drift() -> None:
    # the strategy was updated, the record still says 1% with the 25% intent
    record = Applied("r1", applied=on(1, version=2), intent=on(25))
    half = Serving(enabled=False, percent=25, stickiness="userId", version=3)
    record_on = Applied("r1", applied=on(1, version=2), intent=on(25))
    assert drift(half, record_on, TARGET) == ["environment production was turned off"]
    assert reconcile(rollout(), on(25), on(25), record, TARGET) == (Verdict.RECORD, [])


@pytest.mark.parametrize(
    ("actual", "change"),
    [
        (on(40), "rollout was changed from 25% to 40%"),
        (Serving(enabled=False, percent=25, stickiness="userId", version=3), "turned off"),
        (on(25, stickiness="sessionId"), "stickiness was changed from userId to sessionId"),
        (Serving(enabled=True), "strategy of new-checkout was removed"),
    ],
)
def test_a_person_s_change_is_drift_and_named(actual: Serving, change: str) -> None:
    record = Applied("r1", applied=on(25))
    verdict, changes = reconcile(rollout(), on(25), actual, record, TARGET)
    assert verdict is Verdict.DRIFT
    assert any(change in c for c in changes), changes


def test_a_hold_stays_until_the_rollout_moves_on_then_the_controller_takes_over() -> None:
    held = Applied("r1", applied=on(25), held_version=3, held_what="rollout 25 → 40")
    assert reconcile(rollout(version=3), on(25), on(40), held, TARGET) == (Verdict.HELD, [])
    resumed = rollout(version=4)
    assert reconcile(resumed, on(25, 4), on(40), held, TARGET) == (Verdict.WRITE, [])


def test_turning_off_ignores_the_strategy() -> None:
    record = Applied("r1", applied=Serving(enabled=False))
    off = Serving(enabled=False, percent=25, stickiness="userId", version=3)
    assert reconcile(rollout(Phase.KILLED), Serving(enabled=False), off, record, TARGET) == (
        Verdict.NOTHING,
        [],
    )


@pytest.mark.parametrize(
    "raw",
    [None, 1, "x", [], {}, {"rollout_id": 5}, {"rollout_id": "r", "applied": "no"}],
)
def test_an_unreadable_record_counts_as_none_or_as_empty(raw: object) -> None:
    record = Applied.from_json(raw)
    assert record is None or (record.applied is None and record.held_version is None)


def test_a_record_survives_its_json() -> None:
    record = Applied("r1", applied=on(25), intent=on(50, 4), held_version=None)
    assert Applied.from_json(record.to_json()) == record


OURS = Strategy(
    "flexibleRollout",
    "s-1",
    {"rollout": "25", "stickiness": "userId", "groupId": "new-checkout", "rcFlagVersion": "3"},
)
DEFAULT = Strategy("default", "s-2")


@pytest.mark.parametrize(
    ("strategies", "percent", "tampered", "others"),
    [
        ([OURS], 25, (), ()),
        ([OURS, DEFAULT], 25, (), ("a default strategy (s-2)",)),
        ([DEFAULT, OURS], 25, (), ("a default strategy (s-2)",)),
        ([OURS, dataclasses.replace(DEFAULT, disabled=True)], 25, (), ()),
        ([OURS, dataclasses.replace(DEFAULT, constraints=2)], 25, (), ("a default strategy",)),
        ([dataclasses.replace(OURS, constraints=1)], 25, ("1 constraint(s) were added",), ()),
        ([dataclasses.replace(OURS, segments=3)], 25, ("3 segment(s) were added",), ()),
        ([dataclasses.replace(OURS, disabled=True)], 25, ("the flexibleRollout strategy",), ()),
        (
            [dataclasses.replace(OURS, parameters={**OURS.parameters, "rollout": "\u00b2"})],
            None,
            ("rollout was set to '\u00b2'",),
            (),
        ),
        ([DEFAULT], None, (), ("a default strategy (s-2)",)),
        ([], None, (), ()),
    ],
)
def test_what_an_environment_would_serve_counts_every_strategy(
    strategies: list[Strategy],
    percent: int | None,
    tampered: tuple[str, ...],
    others: tuple[str, ...],
) -> None:
    actual = would_serve(True, strategies, TARGET)
    assert actual.percent == percent
    assert len(actual.tampered) == len(tampered)
    assert all(t.startswith(w) for t, w in zip(actual.tampered, tampered, strict=True))
    assert len(actual.others) == len(others)
    assert all(o.startswith(w) for o, w in zip(actual.others, others, strict=True))
    assert matches(actual, on(25)) is (percent == 25 and not tampered and not others)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        *[("25", 25), ("0", 0), ("100", 100), ("101", None), ("\u00b2", None)],
        *[("\u0663", None), ("", None), (" 5", None), ("-1", None), ("2.5", None)],
        *[("9" * 17, None), (None, None)],
    ],
)
def test_a_whole_percent_is_ascii_digits_in_range(text: str | None, number: int | None) -> None:
    assert whole_number(text, 0, 100) == number


ADDED = ("a default strategy (s-2) was added beside the controller's, serving everyone",)
BESIDE = dataclasses.replace(on(25), strategy_id="s-1", others=ADDED)
CONSTRAINED = dataclasses.replace(on(25), strategy_id="s-1", tampered=("1 constraint(s) …",))
OFF = Serving(enabled=False)


@pytest.mark.parametrize(
    ("phase", "actual", "record", "verdict"),
    [
        # a kill is written whatever a person changed before it
        (Phase.KILLED, on(40), Applied("r1", applied=on(25)), Verdict.WRITE),
        (Phase.KILLED, BESIDE, Applied("r1", applied=on(25)), Verdict.WRITE),
        (Phase.KILLED, BESIDE, None, Verdict.WRITE),
        # once off was applied, turning it back on by hand is a person's change
        (Phase.KILLED, on(25), Applied("r1", applied=OFF), Verdict.DRIFT),
        # another strategy is drift: applied, not yet written, or taken back after a hold
        (Phase.RUNNING, BESIDE, Applied("r1", applied=on(25)), Verdict.DRIFT),
        (Phase.RUNNING, BESIDE, None, Verdict.DRIFT),
        (Phase.RUNNING, BESIDE, Applied("r1", held_version=2), Verdict.DRIFT),
        # the controller's own strategy tampered with: drift once applied, else rewritten
        (Phase.RUNNING, CONSTRAINED, Applied("r1", applied=on(25)), Verdict.DRIFT),
        (Phase.RUNNING, CONSTRAINED, None, Verdict.WRITE),
        (Phase.RUNNING, CONSTRAINED, Applied("r1", held_version=2), Verdict.WRITE),
    ],
)
def test_safety_first_then_every_strategy_counts(
    phase: Phase, actual: Serving, record: Applied | None, verdict: Verdict
) -> None:
    state = rollout(phase)
    want = desired(state, TARGET)
    assert want is not None
    assert reconcile(state, want, actual, record, TARGET)[0] is verdict
