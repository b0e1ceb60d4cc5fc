"""Count guardrails (crash_count, exception_count): a count per exposure, tested on units."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.stats.aggregates import ArmAggregate, CellDelta, CellKey, FlagAggregates
from controller.core.stats.folding import PartitionDelta, fold
from controller.core.stats.guardrails import guardrail_result, units_waiting
from controller.core.stats.power import detectable
from controller.core.stats.regressing import Traffic
from controller.core.stats.sequential import count_rate_test, poisson_variance
from controller.core.stats.units import (
    CRASHES,
    EXCEPTIONS,
    EXPOSURES,
    KIND_COUNT,
    UNIT_BUCKETS,
    UnitBuckets,
    unit_bucket,
)
from controller.core.wire.decoding import InEvent, Rejection, RejectReason, decode_event

PLAN = Plan(stages=[Stage(percent=50), Stage(percent=100)], guardrails=[])
CRASH = Guardrail(metric="crash_count")
EXCEPTION = Guardrail(metric="exception_count")

Unit = tuple[str, int, int, int]
"""A unit's id, exposures, crashes and exceptions (crashes among them)."""


def _arm(units: list[Unit]) -> ArmAggregate:
    """The arm as the store reads it: totals, and each unit's counts in its bucket."""
    totals = [0.0] * (UNIT_BUCKETS * KIND_COUNT)
    for unit, exposures, crashes, exceptions in units:
        base = unit_bucket(unit) * KIND_COUNT
        totals[base + EXPOSURES] += exposures
        totals[base + CRASHES] += crashes
        totals[base + EXCEPTIONS] += exceptions
    return ArmAggregate(
        exposures=sum(u[1] for u in units), units=len(units), buckets=UnitBuckets(tuple(totals))
    )


def _units(arm: str, n: int, exposures: int, crash_every: int, crashes: int = 1) -> list[Unit]:
    """``n`` units of ``exposures`` each; every ``crash_every``-th crashes ``crashes`` times."""
    return [(f"{arm}-{i}", exposures, crashes if i % crash_every == 0 else 0, 0) for i in range(n)]


def _flag(treatment: list[Unit], control: list[Unit]) -> FlagAggregates:
    return FlagAggregates("f", frozenset({1}), _arm(treatment), _arm(control))


@pytest.mark.parametrize(
    ("counts", "regressed"),
    [
        ((200, 10_000, 100, 10_000), True),  # twice the rate, 300 crashes
        ((100, 10_000, 100, 10_000), False),  # the same rate
        ((100, 10_000, 200, 10_000), False),  # better: lower is better
        ((3, 150, 0, 150), False),  # a handful of crashes proves nothing
        ((0, 200, 0, 200), False),
        ((60, 1_000, 40, 10_000), True),  # 6% against 0.4%: a small arm can show it
    ],
)
def test_a_count_per_exposure_regresses_only_when_its_rate_is_clearly_higher(
    counts: tuple[int, int, int, int], regressed: bool
) -> None:
    result = count_rate_test(*counts, alpha=0.05)
    assert result.regressed is regressed
    assert result.direction == "lower_is_better"
    assert (result.p_value < 0.05) is regressed


@pytest.mark.parametrize(
    ("count", "n", "expected"),
    [(20, 1000, 0.02), (0, 1000, 0.0005), (1, 1000, 0.001), (3000, 1000, 3.0), (5, 0, 0.0)],
)
def test_a_counts_variance_per_exposure_is_poisson_floored_at_half_an_event(
    count: int, n: int, expected: float
) -> None:
    assert poisson_variance(count, n) == pytest.approx(expected)


def test_a_count_test_is_never_below_the_variance_identical_arms_share() -> None:
    # Treatment's own rate is 0 (its floor is tiny); identical arms would share 1%.
    result = count_rate_test(0, 100, 1000, 100_000, alpha=0.05)
    assert result.variance == pytest.approx(poisson_variance(1000, 100_100) * (1 / 100 + 1e-5))
    assert not result.regressed


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="counts"):
        count_rate_test(-1, 10, 0, 10)


def test_one_crash_looping_unit_is_a_regression_only_to_a_test_that_ignores_units() -> None:
    control = _units("c", 1000, 5, 10)
    treatment = _units("t", 1000, 5, 10)
    treatment[7] = ("t-looping", 5, 400, 400)  # one device crash-looping
    data = _flag(treatment, control)
    t, c = data.treatment, data.control
    assert (t.crashes, c.crashes) == (500, 100)
    independent = count_rate_test(t.crashes, t.exposures, c.crashes, c.exposures, alpha=0.05)
    assert independent.regressed  # as if every crash were its own draw
    on_units = guardrail_result(CRASH, data, PLAN)
    assert on_units is not None
    assert on_units.unit_of_analysis == "unit"
    assert on_units.n == 2000  # units, not 10,000 exposures
    assert on_units.design_effect is not None
    assert on_units.design_effect > 20
    assert not on_units.regressed


def test_twice_the_crashes_spread_over_many_units_is_a_regression_on_units() -> None:
    data = _flag(_units("t", 4000, 10, 5, crashes=2), _units("c", 4000, 10, 5))
    result = guardrail_result(CRASH, data, PLAN)
    assert result is not None
    assert result.unit_of_analysis == "unit"
    assert result.regressed
    assert result.delta == pytest.approx(0.04 - 0.02)


def test_exception_count_reads_exceptions_and_crash_count_crashes() -> None:
    treatment = [(f"t-{i}", 10, 0, 2 if i % 5 == 0 else 0) for i in range(4000)]
    control = [(f"c-{i}", 10, 0, 1 if i % 5 == 0 else 0) for i in range(4000)]
    data = _flag(treatment, control)
    assert (data.treatment.crashes, data.treatment.exceptions) == (0, 1600)
    exceptions = guardrail_result(EXCEPTION, data, PLAN)
    assert exceptions is not None
    assert exceptions.regressed
    crashes = guardrail_result(CRASH, data, PLAN)
    assert crashes is not None
    assert crashes.delta == 0.0
    assert not crashes.regressed


def test_a_count_waits_for_exposures_in_enough_buckets_of_units() -> None:
    few = [(f"u{i}", 100, 5, 5) for i in range(3)]  # 300 exposures, at most 3 buckets
    data = _flag(few, few)
    assert guardrail_result(CRASH, data, PLAN) is None
    assert "buckets of units hold data" in units_waiting(CRASH, data)


def test_a_count_waits_for_its_floor_of_exposures() -> None:
    data = _flag(_units("t", 100, 1, 2), _units("c", 100, 1, 2))  # 100 exposures an arm
    assert guardrail_result(CRASH, data, PLAN) is None


def test_a_source_with_no_units_counts_no_crashes() -> None:
    assert ArmAggregate(exposures=10).crashes == 0
    assert ArmAggregate(exposures=10).exceptions == 0


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"metric": "crash_count"}, None),
        ({"metric": "exception_count", "tolerance": 0.1, "relative": True}, None),
        ({"metric": "crash_count", "conversion": "checkout"}, "only with conversion_rate"),
        ({"metric": "crash_count", "source": "prometheus"}, "needs its queries"),
        (
            {"metric": "crash_count", "source": "prometheus", "prometheus": {"count": "x"}},
            "cannot be read from Prometheus",
        ),
    ],
)
def test_a_plan_names_a_count_guardrail_by_its_metric(
    given: dict[str, object], problem: str | None
) -> None:
    if problem is None:
        guardrail = Guardrail.model_validate(given)
        assert guardrail.lower_is_better
        assert guardrail.key == given["metric"]
        return
    with pytest.raises(ValidationError, match=problem):
        Guardrail.model_validate(given)


@pytest.mark.parametrize("guardrail", [CRASH, EXCEPTION])
def test_the_power_preview_says_plainly_it_has_no_figure_for_counts(guardrail: Guardrail) -> None:
    found = detectable(guardrail, 5.0, 3600.0, Traffic(requests_per_s=100.0), PLAN)
    assert not found.previewed
    assert found.effect is None
    assert "not previewed" in found.text()


def _decoded(kind: str, unit: str, arm: str, n: int, **extra: object) -> InEvent:
    body = {"type": kind, "v": 1, "id": f"{kind}-{unit}-{n}", "ts": 0, "flag": "f",
            "flag_version": 1, "unit": unit, "arm": arm, **extra}  # fmt: skip
    decoded = decode_event(orjson.dumps(body), max_bytes=9999)
    assert not isinstance(decoded, Rejection), decoded
    return decoded


@pytest.mark.parametrize(
    ("kind", "crashes", "exceptions"),
    [("crash", 1, 1), ("exception", 0, 1), ("exposure", 0, 0), ("conversion", 0, 0)],
)
def test_a_crash_counts_as_a_crash_and_an_exception_in_its_units_bucket(
    kind: str, crashes: int, exceptions: int
) -> None:
    cells: dict[CellKey, CellDelta] = {}
    fold([_decoded(kind, "device-9", "treatment", 0)], cells)
    cell = cells[("f", 1, "treatment")]
    arm = ArmAggregate.from_fields({**cell.counters(), **cell.floats()}, units=1)
    assert (arm.crashes, arm.exceptions) == (crashes, exceptions)
    base = unit_bucket("device-9") * KIND_COUNT
    assert cell.bucket_counts().get(base + CRASHES, 0) == crashes
    assert cell.base_counters().keys() <= {"exp", "conv"}  # no arm total of its own
    assert cell.units == {"device-9"}


def test_ingest_counts_crashes_and_exceptions_among_a_batchs_events() -> None:
    delta = PartitionDelta(partition=0, next_offset=3)
    events = [_decoded(k, "u", "control", i) for i, k in enumerate(("crash", "exception"))]
    fold(events, delta.cells)
    assert delta.events == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"type": "crash", "error": True}, RejectReason.SCHEMA_VIOLATION),  # no such field
        ({"type": "crash", "arm": "both"}, RejectReason.SCHEMA_VIOLATION),
        ({"type": "Crash"}, RejectReason.UNKNOWN_TYPE),
        ({"type": "exception", "v": 2}, RejectReason.UNSUPPORTED_VERSION),
    ],
)
def test_a_bad_crash_or_exception_event_is_refused_with_its_reason(
    body: dict[str, object], reason: RejectReason
) -> None:
    event = {"v": 1, "id": "x", "ts": 0, "flag": "f", "flag_version": 1, "unit": "u",
             "arm": "control", **body}  # fmt: skip
    decoded = decode_event(orjson.dumps(event), max_bytes=9999)
    assert isinstance(decoded, Rejection)
    assert decoded.reason is reason
