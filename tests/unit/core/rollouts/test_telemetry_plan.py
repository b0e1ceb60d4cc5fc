"""A plan's telemetry part: its defaults, its bounds, and the field it is refused by."""

from __future__ import annotations

from typing import Any

import pytest

from controller.core.common.errors import ConfigError
from controller.core.rollouts.plan import load_plan, parse_plan
from controller.core.rollouts.plan_parts import TelemetryPlan

STAGES = [{"percent": 5}, {"percent": 100}]


def test_left_out_there_is_no_telemetry_part_and_its_defaults_are_the_hooks() -> None:
    assert parse_plan({"stages": STAGES}).telemetry is None
    defaults = TelemetryPlan()
    assert defaults.variants == {"treatment": "treatment", "control": "control"}
    assert (defaults.unit_attribute, defaults.error_status_min) == (None, 500)
    assert (defaults.conversions, defaults.conversion_value) == ([], "value")


def test_a_plan_file_names_its_variants_unit_errors_and_conversions() -> None:
    plan = load_plan(
        "stages: [{percent: 5}, {percent: 100}]\n"
        "telemetry:\n"
        "  variants: {on: treatment, off: control}\n"
        "  unit_attribute: enduser.id\n"
        "  error_status_min: 400\n"
        "  conversions: [checkout_completed]\n"
        "  conversion_value: order.total\n"
    )
    assert plan.telemetry == TelemetryPlan(
        variants={"on": "treatment", "off": "control"},
        unit_attribute="enduser.id",
        error_status_min=400,
        conversions=["checkout_completed"],
        conversion_value="order.total",
    )


@pytest.mark.parametrize(
    ("telemetry", "field", "problem"),
    [
        ({"error_status_min": 399}, "telemetry.error_status_min", "greater than or equal to 400"),
        ({"error_status_min": 600}, "telemetry.error_status_min", "less than or equal to 599"),
        ({"variants": {}}, "telemetry.variants", "at least 1 item"),
        ({"variants": {"on": "both"}}, "telemetry.variants.on", "'treatment' or 'control'"),
        ({"variants": {"": "control"}}, "telemetry.variants..[key]", "at least 1 character"),
        (
            {"variants": {f"v{i}": "control" for i in range(65)}},
            "telemetry.variants",
            "at most 64 items",
        ),
        ({"unit_attribute": "user id"}, "telemetry.unit_attribute", "match pattern"),
        ({"unit_attribute": "a" * 129}, "telemetry.unit_attribute", "at most 128 characters"),
        ({"conversions": ["1st"]}, "telemetry.conversions.0", "match pattern"),
        ({"conversions": ["c"] * 33}, "telemetry.conversions", "at most 32 items"),
        ({"conversion_value": ""}, "telemetry.conversion_value", "at least 1 character"),
        ({"sample": 1}, "telemetry.sample", "Extra inputs are not permitted"),
    ],
)
def test_a_telemetry_part_out_of_bounds_is_refused_with_the_field_named(
    telemetry: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_plan({"stages": STAGES, "telemetry": telemetry})
    assert f"{field}: " in str(refused.value)
    assert problem in str(refused.value)
