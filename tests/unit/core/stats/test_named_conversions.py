"""Named conversions: how they fold, how the store's fields read back, and which
conversions a guardrail reads. Tables of cases."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from controller.core.rollouts.plan import Plan
from controller.core.rollouts.plan_parts import Guardrail, Stage
from controller.core.stats.aggregates import (
    ArmAggregate,
    CellDelta,
    CellKey,
    Conversions,
    FlagAggregates,
    NamedDelta,
)
from controller.core.stats.folding import fold
from controller.core.stats.guardrails import guardrail_result
from controller.core.wire.decoding import InEvent, Rejection, decode_event
from controller.core.wire.messages import Arm
from tests.unit.core.stats.test_folding import without_buckets

T1: CellKey = ("f", 1, Arm.TREATMENT)


def conversion(unit: str, name: str | None = None, value: float | None = None) -> InEvent:
    body: dict[str, object] = {
        "type": "conversion",
        "v": 1,
        "id": f"{unit}-{name}-{value}",
        "ts": 0,
        "flag": "f",
        "unit": unit,
        "arm": "treatment",
        "flag_version": 1,
    }
    if name is not None:
        body["name"] = name
    if value is not None:
        body["value"] = value
    decoded = decode_event(orjson.dumps(body), max_bytes=9999)
    assert not isinstance(decoded, Rejection), decoded
    return decoded


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # Unnamed: as before, no name counted.
        ([conversion("a", value=2.0)], CellDelta(conv=1, cv_n=1, cv_sum=2.0, cv_sq=4.0)),
        # Named: in the total and under its name.
        (
            [conversion("a", "checkout_completed", 3.0)],
            CellDelta(
                conv=1,
                cv_n=1,
                cv_sum=3.0,
                cv_sq=9.0,
                named={"checkout_completed": NamedDelta(1, 1, 3.0, 9.0)},
            ),
        ),
        # Two names and an unnamed one: each name apart, the total all three.
        (
            [
                conversion("a", "signup"),
                conversion("b", "checkout_completed", 2.0),
                conversion("c"),
                conversion("d", "checkout_completed", -1.0),
            ],
            CellDelta(
                conv=4,
                cv_n=2,
                cv_sum=1.0,
                cv_sq=5.0,
                named={
                    "signup": NamedDelta(conv=1),
                    "checkout_completed": NamedDelta(2, 2, 1.0, 5.0),
                },
            ),
        ),
    ],
)
def test_a_named_conversion_counts_in_the_total_and_under_its_name(
    events: list[InEvent], expected: CellDelta
) -> None:
    cells: dict[CellKey, CellDelta] = {}
    fold(events, cells)
    expected.units = {e.unit for e in events}
    assert without_buckets(cells) == {T1: expected}


def test_names_are_kept_first_seen_first() -> None:
    cells: dict[CellKey, CellDelta] = {}
    fold([conversion("a", "z"), conversion("b", "a"), conversion("c", "z")], cells)
    assert list(cells[T1].named) == ["z", "a"]


def test_named_fields_are_the_store_fields_suffixed_by_the_name() -> None:
    cell = CellDelta(named={"signup": NamedDelta(conv=2), "buy": NamedDelta(1, 1, 2.5, 6.25)})
    assert cell.named_fields() == {
        "conv:signup": 2,
        "conv:buy": 1,
        "cv_n:buy": 1,
        "cv_sum:buy": 2.5,
        "cv_sq:buy": 6.25,
    }
    assert "conv:signup" not in cell.counters()


def test_store_fields_read_back_per_name() -> None:
    fields: dict[str, float] = {
        "exp": 10,
        "conv": 5,
        "cv_n": 2,
        "cv_sum": 7.0,
        "conv:buy": 2,
        "cv_n:buy": 2,
        "cv_sum:buy": 7.0,
        "cv_sq:buy": 25.0,
        "conv:a:b.c": 1,  # a name may hold ':' itself: the first one separates it
        "conv:~other": 3,
        "h2": 4,
    }
    arm = ArmAggregate.from_fields(fields, units=3)
    assert arm.conversions == 5
    assert arm.latency_histogram[2] == 4
    assert arm.named == {
        "buy": Conversions(2, 2, 7.0, 25.0),
        "a:b.c": Conversions(1),
        "~other": Conversions(3),
    }


NAMED_ARM = ArmAggregate(
    exposures=100,
    conversions=30,
    conversion_values=20,
    conversion_value_sum=200.0,
    conversion_value_sq=4000.0,
    named={"buy": Conversions(10, 10, 150.0, 3000.0)},
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, (30, 20, 200.0, 4000.0)),
        ("buy", (10, 10, 150.0, 3000.0)),
        ("signup", (0, 0, 0.0, 0.0)),  # a name never tracked: nothing converted
    ],
)
def test_an_arm_as_a_guardrail_on_one_name_reads_it(
    name: str | None, expected: tuple[int, int, float, float]
) -> None:
    read = NAMED_ARM.converted(name)
    got = (
        read.conversions,
        read.conversion_values,
        read.conversion_value_sum,
        read.conversion_value_sq,
    )
    assert got == expected
    assert read.exposures == NAMED_ARM.exposures
    if name is None:
        assert read is NAMED_ARM


def _arm(total: int, bought: int, value: float = 10.0) -> ArmAggregate:
    return ArmAggregate(
        exposures=10_000,
        units=10_000,
        conversions=total,
        conversion_values=bought,
        conversion_value_sum=value * bought,
        conversion_value_sq=value * value * bought,
        named={
            "checkout_completed": Conversions(bought, bought, value * bought, value**2 * bought)
        },
    )


def _plan(*guardrails: Guardrail) -> Plan:
    return Plan(stages=[Stage(percent=10), Stage(percent=100)], guardrails=list(guardrails))


RATE = Guardrail(metric="conversion_rate")
NAMED_RATE = Guardrail(metric="conversion_rate", conversion="checkout_completed")
SIGNUP_RATE = Guardrail(metric="conversion_rate", conversion="signup")


@pytest.mark.parametrize(
    ("case", "treatment", "control", "guardrail", "regressed"),
    [
        # Checkouts halved, other conversions up as much: only the named guardrail sees it.
        ("named drop, same total", _arm(2000, 500), _arm(2000, 1000), NAMED_RATE, True),
        ("named drop, same total", _arm(2000, 500), _arm(2000, 1000), RATE, False),
        # Other conversions halved, checkouts unchanged: the total falls, the name holds.
        ("other drop", _arm(1500, 1000), _arm(3000, 1000), NAMED_RATE, False),
        ("other drop", _arm(1500, 1000), _arm(3000, 1000), RATE, True),
    ],
)
def test_a_guardrail_reads_its_own_conversions(
    case: str,
    treatment: ArmAggregate,
    control: ArmAggregate,
    guardrail: Guardrail,
    regressed: bool,
) -> None:
    data = FlagAggregates("f", frozenset({1}), treatment, control)
    result = guardrail_result(guardrail, data, _plan(guardrail))
    assert result is not None, case
    assert result.regressed is regressed, case


def test_a_guardrail_on_a_name_never_tracked_has_too_little_data() -> None:
    data = FlagAggregates("f", frozenset({1}), _arm(2000, 500), _arm(2000, 1000))
    value = Guardrail(metric="conversion_value", conversion="signup")
    assert guardrail_result(value, data, _plan(value)) is None
    # The rate's events are exposures: it is tested, and sees no conversion in either arm.
    rate = guardrail_result(SIGNUP_RATE, data, _plan(SIGNUP_RATE))
    assert rate is not None
    assert rate.delta == 0.0


def test_the_value_guardrail_on_a_name_reads_that_name_s_values() -> None:
    # The totals hold other conversions' values as well: 1,000 more at 100 in each arm.
    cheap, dear = _arm(2000, 1000, value=5.0), _arm(2000, 1000, value=50.0)
    cheap = replace(
        cheap, conversion_values=2000, conversion_value_sum=105_000.0, conversion_value_sq=1e7
    )
    dear = replace(
        dear, conversion_values=2000, conversion_value_sum=150_000.0, conversion_value_sq=1e7
    )
    data = FlagAggregates("f", frozenset({1}), cheap, dear)
    named = Guardrail(metric="conversion_value", conversion="checkout_completed")
    total = Guardrail(metric="conversion_value")
    named_result = guardrail_result(named, data, _plan(named))
    total_result = guardrail_result(total, data, _plan(total))
    assert named_result is not None
    assert total_result is not None
    assert named_result.delta == pytest.approx(5.0 - 50.0)
    assert total_result.delta == pytest.approx((105_000.0 - 150_000.0) / 2000)
