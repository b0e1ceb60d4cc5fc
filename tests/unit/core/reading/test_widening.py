"""A guardrail's interval widening in words: how much units widen it, what that costs the
stage, or that it assumes independent requests."""

from __future__ import annotations

import math

import pytest

from controller.core.reading import INDEPENDENT_REQUESTS, dominant_text, widening_text
from controller.core.reading.intervals import times
from controller.core.wire import DominantUnit, GateEvidence, GuardrailTest


def guardrail_test(
    unit_of_analysis: str = "unit", widening: float | None = None, deff: float | None = None
) -> GuardrailTest:
    return GuardrailTest.model_validate(
        {
            "delta": 0.001,
            "variance": 1e-6,
            "n": 4_000,
            "half_width": 0.004,
            "lower": -0.003,
            "upper": 0.005,
            "regressed": False,
            "direction": "lower_is_better",
            "tolerance": 0.0,
            "alpha": 0.0033,
            "n_tune": 5_000,
            "p_value": 1.0,
            "unit_of_analysis": unit_of_analysis,
            "design_effect": deff,
            "widening": widening,
        }
    )


@pytest.mark.parametrize(
    ("given", "said"),
    [
        # On units, and no wider than as if requests were independent: nothing to say.
        (guardrail_test(widening=None), ""),
        (guardrail_test(widening=1.0, deff=1.0), ""),
        (guardrail_test(widening=1.05, deff=1.1025), ""),
        (guardrail_test(widening=0.9, deff=0.81), ""),
        # Wider: by how much, and the units the stage needs for the same difference.
        (
            guardrail_test(widening=2.3, deff=5.29),
            "units that send many requests or fail together make the interval 2.3 times as wide:"
            " the stage needs about 5.3 times as many units to see the same difference",
        ),
        (
            guardrail_test(widening=1.2, deff=1.44),
            "units that send many requests or fail together make the interval 1.2 times as wide:"
            " the stage needs about 1.4 times as many units to see the same difference",
        ),
        # A Prometheus guardrail (no unit) says what it assumes, whatever else it carries.
        (guardrail_test("request"), INDEPENDENT_REQUESTS),
        (guardrail_test("request", widening=2.0), INDEPENDENT_REQUESTS),
        # Read back damaged from a topic: no number, no word.
        (guardrail_test(widening=math.inf), ""),
        (guardrail_test(widening=math.nan), ""),
    ],
)
def test_a_guardrails_widening_in_words(given: GuardrailTest, said: str) -> None:
    assert widening_text(given) == said


@pytest.mark.parametrize(
    ("factor", "said"),
    [
        (1.06, "1.1 times"),
        (2.3, "2.3 times"),
        (9.9, "9.9 times"),
        (9.96, "10 times"),
        (123.4, "123 times"),
        (2_500.0, "over 1,000 times"),
        (1e300 * 1e300, "over 1,000 times"),
    ],
)
def test_a_factor_as_people_read_one(factor: float, said: str) -> None:
    assert times(factor) == said


def test_a_gate_from_before_units_reads_as_tested_on_requests() -> None:
    """A guardrail published before tests were taken on units carries no unit_of_analysis:
    it was tested on requests, and says so."""
    raw = guardrail_test().model_dump(exclude={"unit_of_analysis", "design_effect", "widening"})
    read = GateEvidence.tolerant({"guardrails": {"error_rate": raw}}).guardrails
    assert read is not None
    old = read["error_rate"]
    assert isinstance(old, GuardrailTest)
    assert widening_text(old) == INDEPENDENT_REQUESTS


BOT = (
    "one bucket of units in treatment sent 41% of its events and carries 93% of its variance:"
    " most likely one unit (a bot, a broken account) decides this metric"
)


@pytest.mark.parametrize(
    ("dominant", "said"),
    [
        # Named by the gate: which arm, its share of the events, its share of the variance.
        ({"arm": "treatment", "events_share": 0.41, "variance_share": 0.93}, BOT),
        (
            {"arm": "control", "events_share": 0.004, "variance_share": 0.5},
            "one bucket of units in control sent 0% of its events and carries 50% of its"
            " variance: most likely one unit (a bot, a broken account) decides this metric",
        ),
        # Named by none (no bucket carries half, or a design effect under 2): no word.
        (None, ""),
    ],
)
def test_the_unit_that_decides_a_metric_in_words(
    dominant: dict[str, object] | None, said: str
) -> None:
    test = guardrail_test(widening=6.0, deff=36.0).model_copy(
        update={"dominant": None if dominant is None else DominantUnit.model_validate(dominant)}
    )
    assert dominant_text(test) == said


def test_a_published_dominant_part_reads_back_into_the_same_words() -> None:
    raw = guardrail_test(widening=6.0, deff=36.0).model_dump() | {
        "dominant": {"arm": "treatment", "events_share": 0.41, "variance_share": 0.93}
    }
    read = GateEvidence.tolerant({"guardrails": {"error_rate": raw}}).guardrails
    assert read is not None
    test = read["error_rate"]
    assert isinstance(test, GuardrailTest)
    assert dominant_text(test) == BOT
