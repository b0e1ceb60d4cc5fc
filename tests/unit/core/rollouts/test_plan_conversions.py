"""A guardrail on one named conversion: what a plan accepts, what it refuses and why,
and the key that names the guardrail everywhere it is shown."""

from __future__ import annotations

import pytest

from controller.core.common.errors import ConfigError
from controller.core.rollouts.plan import load_plan
from controller.core.rollouts.plan_parts import (
    Guardrail,
    conversion_of,
    guardrail_key,
    metric_of,
)

PLAN = """
stages: [{{percent: 10}}, {{percent: 100}}]
guardrails:
  - {{metric: error_rate}}
  - {guardrail}
"""


@pytest.mark.parametrize(
    ("guardrail", "key"),
    [
        ("{metric: conversion_rate}", "conversion_rate"),
        (
            "{metric: conversion_rate, conversion: checkout_completed}",
            "conversion_rate:checkout_completed",
        ),
        (
            "{metric: conversion_value, conversion: order.paid, relative: true, tolerance: 0.1}",
            "conversion_value:order.paid",
        ),
        ("{metric: conversion_rate, conversion: 'app:signup-v2'}", "conversion_rate:app:signup-v2"),
    ],
)
def test_a_plan_may_guard_one_named_conversion(guardrail: str, key: str) -> None:
    plan = load_plan(PLAN.format(guardrail=guardrail))
    assert [g.key for g in plan.guardrails] == ["error_rate", key]


NAME_REFUSED = r"guardrails\.1\.conversion: "


@pytest.mark.parametrize(
    ("guardrail", "says"),
    [
        # The name is refused with its field named.
        ("{metric: conversion_rate, conversion: 'checkout completed'}", NAME_REFUSED),
        ("{metric: conversion_rate, conversion: 9lives}", NAME_REFUSED),
        ("{metric: conversion_rate, conversion: ''}", NAME_REFUSED),
        ("{metric: conversion_rate, conversion: ~other}", NAME_REFUSED),
        (f"{{metric: conversion_rate, conversion: {'a' * 65}}}", NAME_REFUSED),
        ("{metric: conversion_rate, conversion: [a]}", NAME_REFUSED),
        # A name only with a metric on conversions.
        (
            "{metric: error_rate, conversion: checkout_completed}",
            r"guardrails\.1: .*conversion.*not error_rate",
        ),
        (
            "{metric: latency_p99, conversion: checkout_completed}",
            r"guardrails\.1: .*conversion.*not latency_p99",
        ),
    ],
)
def test_a_bad_conversion_is_refused_naming_the_field(guardrail: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_plan(PLAN.format(guardrail=guardrail))


@pytest.mark.parametrize(
    ("metric", "conversion", "key"),
    [
        ("error_rate", None, "error_rate"),
        ("conversion_rate", "checkout_completed", "conversion_rate:checkout_completed"),
        ("conversion_value", "a:b", "conversion_value:a:b"),
    ],
)
def test_a_key_gives_back_its_metric_and_conversion(
    metric: str, conversion: str | None, key: str
) -> None:
    assert guardrail_key(metric, conversion) == key
    assert metric_of(key) == metric
    assert conversion_of(key) == conversion


def test_an_unnamed_guardrail_keeps_its_metric_as_key() -> None:
    assert Guardrail(metric="conversion_rate").key == "conversion_rate"
    assert Guardrail(metric="conversion_rate").conversion is None
