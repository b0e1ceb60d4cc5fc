"""The one evaluation function: a flag state and a targeting key give an arm and a reason."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from controller.core.reading.views import FlagStateView
from controller.core.rules import AudienceRule, Ring, rule_context
from controller.core.wire.bucketing import assign
from controller.core.wire.evaluation import ErrorCode, Evaluation, Reason, evaluate
from controller.core.wire.messages import Arm, FlagState, FlagStatus
from controller.sdk.flags import FlagBook
from tests.vectors import generate


def state(status: FlagStatus = FlagStatus.ROLLING_OUT, percent: float = 50.0) -> FlagState:
    return FlagState(
        v=1,
        type="flag_state",
        id="s7",
        ts=1_700_000_000_000,
        flag="checkout",
        version=7,
        status=status,
        percent=percent,
        salt="pepper",
        rollout_id="r-1",
        stage=2,
    )


@pytest.mark.parametrize(
    ("status", "percent", "unit", "arm", "version", "reason", "error"),
    [
        (FlagStatus.ROLLING_OUT, 100.0, "u1", Arm.TREATMENT, 7, Reason.STATIC, None),
        (FlagStatus.ROLLING_OUT, 0.0, "u1", Arm.CONTROL, 7, Reason.STATIC, None),
        (
            FlagStatus.ROLLING_OUT,
            50.0,
            "u1",
            assign("checkout", "pepper", "u1", 50.0),
            7,
            Reason.SPLIT,
            None,
        ),
        (FlagStatus.COMPLETED, 100.0, "u1", Arm.TREATMENT, 7, Reason.STATIC, None),
        (FlagStatus.INACTIVE, 100.0, "u1", Arm.CONTROL, 0, Reason.DISABLED, None),
        (FlagStatus.ROLLED_BACK, 100.0, "u1", Arm.CONTROL, 0, Reason.DISABLED, None),
        (FlagStatus.KILLED, 100.0, "u1", Arm.CONTROL, 0, Reason.DISABLED, None),
        # No targeting key: an error only where units are bucketed.
        (FlagStatus.ROLLING_OUT, 50.0, None, Arm.CONTROL, 0, Reason.ERROR, "TARGETING_KEY_MISSING"),
        (FlagStatus.ROLLING_OUT, 50.0, "", Arm.CONTROL, 0, Reason.ERROR, "TARGETING_KEY_MISSING"),
        (FlagStatus.ROLLING_OUT, 100.0, None, Arm.TREATMENT, 7, Reason.STATIC, None),
        (FlagStatus.ROLLING_OUT, 0.0, "", Arm.CONTROL, 7, Reason.STATIC, None),
        (FlagStatus.COMPLETED, 100.0, None, Arm.TREATMENT, 7, Reason.STATIC, None),
        (FlagStatus.KILLED, 50.0, None, Arm.CONTROL, 0, Reason.DISABLED, None),
        (FlagStatus.INACTIVE, 0.0, "", Arm.CONTROL, 0, Reason.DISABLED, None),
        (FlagStatus.ROLLED_BACK, 25.0, None, Arm.CONTROL, 0, Reason.DISABLED, None),
        # A key that cannot be a unit is the context's error, whatever the flag.
        (FlagStatus.KILLED, 50.0, 42, Arm.CONTROL, 0, Reason.ERROR, "INVALID_CONTEXT"),
        (
            FlagStatus.COMPLETED,
            100.0,
            "lone-\ud800",
            Arm.CONTROL,
            0,
            Reason.ERROR,
            "INVALID_CONTEXT",
        ),
        (FlagStatus.ROLLING_OUT, 100.0, 42, Arm.CONTROL, 0, Reason.ERROR, "INVALID_CONTEXT"),
        (FlagStatus.ROLLING_OUT, 100.0, "u" * 257, Arm.CONTROL, 0, Reason.ERROR, "INVALID_CONTEXT"),
        (FlagStatus.ROLLING_OUT, 100.0, "u" * 256, Arm.TREATMENT, 7, Reason.STATIC, None),
        (
            FlagStatus.ROLLING_OUT,
            100.0,
            "lone-\ud800",
            Arm.CONTROL,
            0,
            Reason.ERROR,
            "INVALID_CONTEXT",
        ),
    ],
)
def test_a_state_and_a_unit_give_an_arm_a_version_and_a_reason(
    status: FlagStatus,
    percent: float,
    unit: object,
    arm: Arm,
    version: int,
    reason: Reason,
    error: str | None,
) -> None:
    got = evaluate("checkout", state(status, percent), unit)
    assert (got.arm, got.version, got.reason) == (arm, version, reason)
    assert (got.error.value if got.error else None) == error
    assert bool(got.detail) == (error is not None)
    assert got.value is (arm is Arm.TREATMENT)
    assert got.variant == arm.value


def test_an_unknown_flag_is_not_found_and_served_control() -> None:
    got = evaluate("nope", None, "u1")
    assert (got.arm, got.version, got.reason, got.error) == (
        Arm.CONTROL,
        0,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    # An unknown flag buckets nobody: without a targeting key it is still not found.
    assert evaluate("nope", None, None).error is ErrorCode.FLAG_NOT_FOUND
    assert evaluate("nope", None, 42).error is ErrorCode.INVALID_CONTEXT


def test_the_metadata_carries_what_an_exposure_reports() -> None:
    got = evaluate("checkout", state(percent=100.0), "u1")
    assert got.metadata() == {"flag_version": 7, "rollout_id": "r-1", "stage": 2}
    assert Evaluation("f", Arm.CONTROL, 0, Reason.ERROR).metadata() == {"flag_version": 0}


def test_the_view_apps_poll_evaluates_like_the_message() -> None:
    message = state(percent=33.333)
    view = FlagStateView.model_validate(message.model_dump())
    for i in range(2000):
        assert evaluate("checkout", view, f"user-{i}") == evaluate("checkout", message, f"user-{i}")


def test_every_bucketing_vector_comes_out_of_the_evaluation() -> None:
    vectors: list[dict[str, Any]] = json.loads(generate.PATH.read_text(encoding="utf-8"))["vectors"]
    for v in vectors:
        held = state(percent=v["percent"]).model_copy(update={"flag": v["flag"], "salt": v["salt"]})
        got = evaluate(v["flag"], held, v["unit"])
        bucketed = 0 < v["percent"] < 100
        assert (got.variant, got.reason) == (v["arm"], SPLIT if bucketed else STATIC), v


SPLIT, STATIC = Reason.SPLIT, Reason.STATIC


def test_the_sdk_serves_what_the_evaluation_says() -> None:
    book = FlagBook([state(percent=37.5)])
    for unit in ("ok", "", "x" * 300, "lone-\ud800", *(f"u{i}" for i in range(500))):
        got = evaluate("checkout", book.state("checkout"), unit)
        assert book.arm("checkout", unit) == (got.arm, got.version)
    assert book.arm("checkout", "u1")[0] == assign("checkout", "pepper", "u1", 37.5)


@pytest.mark.parametrize(
    ("attributes", "read"),
    [
        ({}, {"targetingKey": "u"}),
        ({"targetingKey": "someone else", "plan": "pro"}, {"targetingKey": "u", "plan": "pro"}),
        ({"targetingKey": date(2024, 1, 1)}, {"targetingKey": "u"}),
        ({"day": date(2024, 2, 29)}, {"day": "2024-02-29", "targetingKey": "u"}),
        (
            {"at": datetime(2024, 1, 1, 6, 59, 59, 120, tzinfo=timezone(timedelta(hours=7)))},
            {"at": "2023-12-31T23:59:59.000120Z", "targetingKey": "u"},
        ),
        (
            {"at": datetime(2024, 1, 1, 0, 0, 1)},  # noqa: DTZ001 (naive: read as UTC)
            {"at": "2024-01-01T00:00:01Z", "targetingKey": "u"},
        ),
        (
            {"at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
            {"at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "targetingKey": "u"},
        ),
    ],
)
def test_rules_read_the_unit_as_targeting_key_and_dates_as_instant_text(
    attributes: dict[str, object], read: dict[str, object]
) -> None:
    assert rule_context("u", attributes) == read


def ringed(*thresholds: int) -> FlagState:
    """A targeted state: first a ``plan == "pro"`` ring, then everyone's, at ``thresholds``."""
    audiences: list[dict[str, Any] | None] = [{"attribute": "plan", "op": "==", "value": "pro"}]
    audiences += [None] * (len(thresholds) - 1)
    rings = [
        Ring(audience=None if a is None else AudienceRule.model_validate(a), threshold=t)
        for a, t in zip(audiences, thresholds, strict=True)
    ]
    return state().model_copy(update={"rings": rings})


@pytest.mark.parametrize(
    ("thresholds", "unit", "attributes", "arm", "error"),
    [
        # Every ring treats all of its audience or none: the rules alone place a unit.
        ((100_000,), None, {"plan": "pro"}, Arm.TREATMENT, None),
        ((100_000,), "", {"plan": "free"}, Arm.CONTROL, None),
        ((100_000, 0), None, {"plan": "free"}, Arm.CONTROL, None),
        ((100_000, 100_000), None, {"plan": "free"}, Arm.TREATMENT, None),
        ((0,), None, {"plan": "pro"}, Arm.CONTROL, None),
        # A key given is bucketed as ever; a fake one in the attributes is not a key.
        ((100_000,), "u1", {"plan": "pro"}, Arm.TREATMENT, None),
        ((100_000,), None, {"plan": "pro", "targetingKey": "u1"}, Arm.TREATMENT, None),
        # A ring that splits its audience needs the key.
        ((50_000,), None, {"plan": "pro"}, Arm.CONTROL, "TARGETING_KEY_MISSING"),
        ((100_000, 20_000), "", {"plan": "free"}, Arm.CONTROL, "TARGETING_KEY_MISSING"),
    ],
)
def test_a_targeted_state_needs_a_key_only_where_a_ring_splits_its_audience(
    thresholds: tuple[int, ...],
    unit: str | None,
    attributes: dict[str, object],
    arm: Arm,
    error: str | None,
) -> None:
    got = evaluate("checkout", ringed(*thresholds), unit, attributes)
    assert (got.arm, got.error.value if got.error else None) == (arm, error)
    assert got.reason is (Reason.ERROR if error else Reason.TARGETING_MATCH)


def test_without_a_key_a_rule_naming_the_key_does_not_match() -> None:
    rule = AudienceRule.model_validate({"attribute": "targetingKey", "op": "==", "value": "u1"})
    targeted = state().model_copy(update={"rings": [Ring(audience=rule, threshold=100_000)]})
    assert evaluate("checkout", targeted, "u1").arm is Arm.TREATMENT
    assert evaluate("checkout", targeted, None, {"targetingKey": "u1"}).arm is Arm.CONTROL
    assert rule_context(None, {"targetingKey": "u1", "plan": "pro"}) == {"plan": "pro"}
