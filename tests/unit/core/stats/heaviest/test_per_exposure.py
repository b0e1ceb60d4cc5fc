"""A unit that decides a guardrail per exposure: the hold rule on buckets, and its naming."""

from __future__ import annotations

import hashlib

import pytest

from controller.core.rollouts import Guardrail, HeavyUnits
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan
from controller.core.stats import (
    DECIDING_SHARE,
    ArmAggregate,
    FlagAggregates,
    Heaviest,
    UnitBuckets,
    UnitCount,
    UnitShare,
    weighed,
)
from controller.core.stats.heaviest.per_exposure import BucketShare, bucket_text, heaviest_bucket
from controller.core.stats.units import (
    CONVERSIONS,
    CRASHES,
    EXCEPTIONS,
    EXPOSURES,
    KIND_COUNT,
    REQUESTS,
    UNIT_BUCKETS,
    VALUE_SUM,
    VALUES,
    unit_bucket,
)

BOT = "bot-7"
HOME = unit_bucket(BOT)

Counts = dict[int, float]
"""An arm's totals of some kinds: spread evenly over the buckets, but for the bot's."""


def arm(
    spread: Counts, bot: Counts | None = None, listed: tuple[UnitCount, ...] = ()
) -> ArmAggregate:
    """An arm with ``spread`` even over its 64 buckets, and ``bot``'s counts in its bucket."""
    totals = [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    for kind, total in spread.items():
        for b in range(UNIT_BUCKETS):
            totals[b * KIND_COUNT + kind] = total / UNIT_BUCKETS
    for kind, n in (bot or {}).items():
        totals[HOME * KIND_COUNT + kind] += n
    exposures = spread.get(EXPOSURES, 0) + (bot or {}).get(EXPOSURES, 0)
    requests = spread.get(REQUESTS, 0) + (bot or {}).get(REQUESTS, 0)
    return ArmAggregate(
        exposures=round(exposures),
        units=1_000,
        requests=round(requests),
        buckets=UnitBuckets(tuple(totals)),
        heaviest=Heaviest(listed),
    )


def flag(treatment: ArmAggregate, control: ArmAggregate) -> FlagAggregates:
    return FlagAggregates("f", frozenset({1}), treatment, control)


REST = 6_400.0
"""Each arm's events besides the bot's: 100 a bucket."""
EVEN = {EXPOSURES: REST, CONVERSIONS: 320.0, VALUES: 320.0, VALUE_SUM: 6_400.0}


def share_of(share: float) -> float:
    """The bot's events for a bucket holding ``share`` of an arm: its 100 and the bot's."""
    return (share * REST - REST / UNIT_BUCKETS) / (1 - share)


@pytest.mark.parametrize(
    ("metric", "bot", "held"),
    [
        # The bucket's share of the arm's exposures decides the guardrails per exposure.
        ("conversion_rate", {EXPOSURES: share_of(0.4)}, False),
        ("conversion_rate", {EXPOSURES: share_of(DECIDING_SHARE)}, False),
        ("conversion_rate", {EXPOSURES: share_of(0.51)}, True),
        ("crash_count", {EXPOSURES: share_of(0.9)}, True),
        ("exception_count", {EXPOSURES: share_of(0.9)}, True),
        # The conversion value is per valued conversion: its share of those decides it.
        ("conversion_value", {EXPOSURES: share_of(0.9)}, False),
        ("conversion_value", {VALUES: 1_000.0, VALUE_SUM: 20_000.0}, True),
        # A crash loop: most of the crashes, one exposure. Its residual is its own and fills
        # both the difference and its variance, so z stays near 1: not held.
        ("crash_count", {EXPOSURES: 1.0, CRASHES: 5_000.0}, False),
        ("exception_count", {EXPOSURES: 1.0, EXCEPTIONS: 5_000.0}, False),
        ("conversion_rate", {EXPOSURES: 10.0, CONVERSIONS: 5_000.0}, False),
        # Not a guardrail per exposure: the requests' own rule (deciding.py) takes it.
        ("error_rate", {EXPOSURES: share_of(0.9), REQUESTS: 1e6}, False),
    ],
)
def test_a_bucket_over_the_share_of_the_denominator_holds_the_guardrail(
    metric: str, bot: Counts, held: bool
) -> None:
    data = flag(arm(EVEN, bot), arm(EVEN))
    found = heaviest_bucket(metric, data)
    assert (found is not None) == held
    if found is not None:
        assert (found.arm, found.bucket) == ("treatment", HOME)
        assert found.share > DECIDING_SHARE


def test_either_arm_may_hold_it_and_the_larger_share_is_named() -> None:
    data = flag(arm(EVEN, {EXPOSURES: share_of(0.6)}), arm(EVEN, {EXPOSURES: share_of(0.8)}))
    found = heaviest_bucket("conversion_rate", data)
    assert found is not None
    assert found.arm == "control"
    assert found.share == pytest.approx(0.8)
    alone = heaviest_bucket("conversion_rate", flag(arm(EVEN), arm(EVEN, {EXPOSURES: 9e4})))
    assert alone is not None
    assert alone.arm == "control"


def test_arms_without_buckets_or_exposures_hold_nothing() -> None:
    bare = FlagAggregates("f", frozenset({1}), ArmAggregate(exposures=10), ArmAggregate())
    assert heaviest_bucket("conversion_rate", bare) is None
    assert heaviest_bucket("conversion_rate", flag(arm({}), arm({}))) is None


@pytest.mark.parametrize(
    ("found", "text"),
    [
        (
            BucketShare("treatment", 3, 0.97, "exposures"),
            "one bucket of units holds 97% of treatment's exposures: most likely one unit"
            " (a bot, a broken account) decides it, so it is not tested while that share is"
            " over 50%",
        ),
        (
            BucketShare(
                "control",
                3,
                0.62,
                "valued conversions",
                unit=UnitShare("control", BOT, 0.6, 0.1),
            ),
            "one bucket of units holds 62% of control's valued conversions: unit bot-7,"
            " sending 60% of control's requests, is in it and most likely decides it, so it is"
            " not tested while that share is over 50%",
        ),
    ],
)
def test_the_reason_says_the_bucket_and_the_unit_listed_in_it(
    found: BucketShare, text: str
) -> None:
    assert bucket_text(found) == text


def plan(*metrics: str, **heavy: object) -> Plan:
    guardrails = [Guardrail.model_validate({"metric": m, "tolerance": 0.0}) for m in metrics]
    return DEFAULT_PLAN.model_copy(
        update={"guardrails": guardrails, "heavy_units": HeavyUnits.model_validate(heavy)}
    )


def test_the_gate_holds_them_with_the_unit_named_even_where_no_request_is_listed() -> None:
    metrics = (
        "conversion_rate",
        "crash_count",
        "exception_count",
        "conversion_value",
        "error_rate",
    )
    bot = {EXPOSURES: share_of(0.9), REQUESTS: 90_000.0}
    listed = (UnitCount(BOT, 90_000, 0),)
    evenly = {**EVEN, REQUESTS: REST}
    named = weighed(plan(*metrics, cap="off"), flag(arm(evenly, bot, listed), arm(evenly)))
    assert set(named.held) == {"conversion_rate", "crash_count", "exception_count", "error_rate"}
    assert named.held["crash_count"].startswith(
        "crash_count not yet tested: one bucket of units holds 90% of treatment's exposures:"
        " unit bot-7, sending 93% of treatment's requests, is in it"
    )
    unlisted = weighed(plan(*metrics), flag(arm(EVEN, {EXPOSURES: share_of(0.9)}), arm(EVEN)))
    assert set(unlisted.held) == {"conversion_rate", "crash_count", "exception_count"}
    assert "most likely one unit" in unlisted.held["conversion_rate"]
    assert unlisted.data == flag(arm(EVEN, {EXPOSURES: share_of(0.9)}), arm(EVEN))


def test_caps_leave_exposures_as_they_are_and_a_hashed_plan_hides_the_id() -> None:
    bot = {EXPOSURES: share_of(0.9), REQUESTS: 90_000.0}
    listed = (UnitCount(BOT, 90_000, 0),)
    evenly = {**EVEN, REQUESTS: REST}
    data = flag(arm(evenly, bot, listed), arm(evenly))
    capped = weighed(plan("conversion_rate", "error_rate", cap=100), data)
    assert capped.capping.units  # the bot's requests capped: the error rate is tested
    assert set(capped.held) == {"conversion_rate"}  # its exposures are not capped
    hashed = weighed(plan("conversion_rate", unit_names="hashed"), data)
    digest = hashlib.sha256(BOT.encode()).hexdigest()[:12]
    assert f"unit {digest}, sending" in hashed.held["conversion_rate"]
    assert BOT not in hashed.held["conversion_rate"]
