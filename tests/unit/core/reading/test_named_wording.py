"""A guardrail on a named conversion as people read it: its name, its unit, the
control's rate a relative lift is taken against, and an arm's rate from served evidence."""

from __future__ import annotations

import pytest

from controller.core.reading.evidence_view import Evidence
from controller.core.reading.wording import (
    amount_text,
    control_rate,
    guardrail_text,
    metric_name,
    quantity_text,
)

ARMS = {
    "treatment": {"exposures": 1000, "conversions": 300, "named_conversions": {"buy": 25}},
    "control": {"exposures": 2000, "conversions": 600, "named_conversions": {"buy": 100}},
}


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("conversion_rate", "conversion rate"),
        ("conversion_rate:checkout_completed", "conversion rate of checkout_completed"),
        ("conversion_value:order.paid", "conversion value of order.paid"),
        ("made_up:thing", "made_up:thing"),
    ],
)
def test_a_key_reads_as_its_metric_of_its_conversion(key: str, name: str) -> None:
    assert metric_name(key) == name


def test_a_named_rate_is_in_points_and_a_named_value_in_its_own_unit() -> None:
    assert amount_text("conversion_rate:buy", 0.02) == "2.0 pp"
    assert amount_text("conversion_value:buy", 1.5) == "1.5"
    shown = quantity_text("conversion_rate:buy", -0.03, -0.05, -0.01, 0.05)
    assert shown == "conversion rate of buy -3.0 pp [-5.0, -1.0] (-60%)"


@pytest.mark.parametrize(
    ("key", "rate"),
    [
        ("conversion_rate", 0.3),
        ("conversion_rate:buy", 0.05),  # the name's conversions per exposure
        ("conversion_rate:signup", None),  # a name the arms do not count
        ("conversion_value:buy", None),  # no rate
    ],
)
def test_the_control_rate_of_a_key(key: str, rate: float | None) -> None:
    assert control_rate(key, ARMS) == rate


def test_a_served_test_of_a_named_guardrail_reads_with_its_lift() -> None:
    test = {"delta": -0.025, "lower": -0.04, "upper": -0.01}
    assert guardrail_text("conversion_rate:buy", test, ARMS).endswith("(-50%)")


def test_served_arms_give_the_named_rate_and_refuse_odd_counts() -> None:
    read = Evidence.read({"arms": ARMS})
    assert read.arms is not None
    treatment = read.arms["treatment"]
    assert treatment is not None
    assert treatment.rate("conversion_rate:buy") == 0.025
    assert treatment.rate("conversion_rate") == 0.3
    odd = Evidence.read(
        {"arms": {"treatment": {"exposures": 10, "named_conversions": {"buy": "9", "x": True}}}}
    )
    assert odd.arms is not None
    arm = odd.arms["treatment"]
    assert arm is not None
    assert arm.rate("conversion_rate:buy") is None
    assert arm.named_conversions == {"buy": None, "x": None}
