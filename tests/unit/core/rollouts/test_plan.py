"""Plans: every number finite and bounded, refused with the field named; command plans bounded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from controller.core.common.errors import ConfigError
from controller.core.common.message_fields import MAX_PLAN_BYTES, MAX_PLAN_DEPTH
from controller.core.rollouts.plan import Plan, load_plan, parse_plan
from controller.core.rollouts.plan_parts import MAX_COUNT, MAX_DURATION, MAX_TOLERANCE
from controller.core.wire.messages import Command


def plan_data(
    stage: dict[str, Any] | None = None, guardrail: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    """A valid plan with a change to its first stage, its one guardrail or its top level."""
    return {
        "stages": [{"percent": 5, **(stage or {})}, {"percent": 100}],
        "guardrails": [{"metric": "error_rate", **(guardrail or {})}],
        **top,
    }


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        (plan_data({"min_duration": -1}), "stages.0.min_duration", "greater than or equal"),
        (plan_data({"min_duration": "-PT1H"}), "stages.0.min_duration", "greater than or equal"),
        (plan_data({"max_duration": "-PT1H"}), "stages.0.max_duration", "greater than or equal"),
        (plan_data(no_traffic_grace=-3600), "no_traffic_grace", "greater than or equal"),
        (plan_data({"min_duration": "P366D"}), "stages.0.min_duration", "less than or equal"),
        (plan_data({"max_duration": "P400D"}), "stages.0.max_duration", "less than or equal"),
        (plan_data(no_traffic_grace=1e12), "no_traffic_grace", "less than or equal"),
        (plan_data({"min_duration": 1e20}), "stages.0.min_duration", "timedelta"),
        (plan_data({"min_units_per_arm": -1}), "stages.0.min_units_per_arm", "greater"),
        (plan_data({"min_units_per_arm": MAX_COUNT + 1}), "stages.0.min_units_per_arm", "less"),
        (plan_data(n_tune=10**400), "n_tune", "less than or equal"),
        (plan_data(n_tune=99), "n_tune", "greater than or equal"),
        (plan_data(min_metric_events=MAX_COUNT + 1), "min_metric_events", "less than or equal"),
        (plan_data(min_metric_events=0), "min_metric_events", "greater than or equal"),
        (plan_data(guardrail={"tolerance": float("inf")}), "guardrails.0.tolerance", "finite"),
        (plan_data(guardrail={"tolerance": float("nan")}), "guardrails.0.tolerance", "finite"),
        (plan_data(guardrail={"tolerance": -0.1}), "guardrails.0.tolerance", "greater"),
        (plan_data(guardrail={"tolerance": 2e9}), "guardrails.0.tolerance", "less than"),
        (
            plan_data(guardrail={"metric": "latency_exceedance", "edge_ms": 1e300}),
            "guardrails.0.edge_ms",
            "less than or equal",
        ),
        (
            plan_data(guardrail={"metric": "latency_exceedance", "edge_ms": float("inf")}),
            "guardrails.0.edge_ms",
            "finite",
        ),
        (plan_data(alpha=float("nan")), "alpha", "finite"),
        (plan_data(srm_p_threshold=float("nan")), "srm_p_threshold", "finite"),
        (plan_data({"percent": float("inf")}), "stages.0.percent", "finite"),
    ],
)
def test_out_of_range_numbers_are_refused_with_the_field_named(
    data: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_plan(data)
    assert f"{field}: " in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        plan_data({"min_duration": 0, "max_duration": 0}, no_traffic_grace=0),
        plan_data(
            {"min_duration": MAX_DURATION, "max_duration": MAX_DURATION},
            no_traffic_grace=MAX_DURATION,
        ),
        plan_data({"min_units_per_arm": MAX_COUNT}, n_tune=MAX_COUNT, min_metric_events=MAX_COUNT),
        plan_data(guardrail={"tolerance": MAX_TOLERANCE}),
        plan_data(guardrail={"metric": "latency_exceedance", "edge_ms": 86_400_000}),
    ],
)
def test_numbers_at_the_bounds_are_accepted(data: dict[str, Any]) -> None:
    assert isinstance(parse_plan(data), Plan)


def test_a_plan_whose_max_duration_is_negative_never_starts() -> None:
    # The reported case: max_duration -1 h made a started rollout "stuck" at once.
    with pytest.raises(ConfigError, match=r"stages\.0\.max_duration"):
        parse_plan(plan_data({"min_duration": 0, "max_duration": -timedelta(hours=1)}))


def command(plan: Any) -> dict[str, Any]:
    return {
        "type": "command",
        "v": 1,
        "id": "c-1",
        "ts": 1_763_780_000_000,
        "action": "start",
        "flag": "checkout.new-flow",
        "actor": "alice",
        "plan": plan,
    }


def nested(depth: int) -> dict[str, Any]:
    """A plan-shaped object nesting ``depth`` levels (the plan itself is one)."""
    inner: Any = 1
    for _ in range(depth - 1):
        inner = [inner]
    return {"stages": inner}


def test_a_command_plan_as_deep_as_allowed_is_accepted() -> None:
    assert Command.model_validate(command(nested(MAX_PLAN_DEPTH))).plan is not None


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        (nested(MAX_PLAN_DEPTH + 1), "deeper than"),
        (nested(300), "deeper than"),
        ({"name": "x" * MAX_PLAN_BYTES}, "bytes"),
        ({"n_tune": 2**70}, "not JSON data"),
    ],
)
def test_a_command_plan_beyond_its_bounds_is_refused(plan: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Command.model_validate(command(plan))


@pytest.mark.parametrize("depth", [MAX_PLAN_DEPTH + 1, 250, 1000, 5000])
def test_a_deep_command_from_json_only_fails_validation(depth: int) -> None:
    raw = orjson.dumps(command(None)).replace(
        b'"plan":null', b'"plan":{"a":' + b"[" * depth + b"]" * depth + b"}"
    )
    with pytest.raises(ValidationError):
        Command.model_validate_json(raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # deeper than orjson reads: the engine dead-letters it as malformed
    with pytest.raises(ValidationError):
        Command.model_validate(obj)


@pytest.mark.parametrize(
    ("data", "dry_run", "early_advance"),
    [
        (plan_data(), False, False),
        (plan_data(guardrail={"dry_run": True}), True, False),
        (plan_data(early_advance=True), False, True),
        (plan_data(guardrail={"dry_run": False}, early_advance=False), False, False),
    ],
)
def test_dry_run_and_early_advance_are_off_unless_asked(
    data: dict[str, Any], dry_run: bool, early_advance: bool
) -> None:
    plan = parse_plan(data)
    assert plan.guardrails[0].dry_run is dry_run
    assert plan.early_advance is early_advance


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (plan_data(guardrail={"dry_run": "sometimes"}), "guardrails.0.dry_run"),
        (plan_data(early_advance=[1]), "early_advance"),
    ],
)
def test_plan_options_must_be_booleans(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"{field}: "):
        parse_plan(data)


def test_plan_options_read_from_yaml() -> None:
    text = (
        "early_advance: true\n"
        "stages: [{percent: 10, min_duration: PT6H}, {percent: 100}]\n"
        "guardrails:\n"
        "  - {metric: error_rate, tolerance: 0.002}\n"
        "  - {metric: latency_p99, tolerance: 0.1, relative: true, dry_run: true}\n"
    )
    plan = load_plan(text)
    assert plan.early_advance
    assert [g.dry_run for g in plan.guardrails] == [False, True]


UNLEASH = {"unleash": {"feature": "new-checkout"}}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"stages": [{"percent": 0.5}, {"percent": 100}], "backend": UNLEASH}, "stages.0.percent"),
        ({"stages": [{"percent": 1}, {"percent": 2.5}], "backend": UNLEASH}, "stages.1.percent"),
        (
            {
                "stages": [{"percent": 5}, {"percent": 100}],
                "watch": {"duration": "PT1H", "holdback_percent": 0.5},
                "backend": UNLEASH,
            },
            "watch.holdback_percent",
        ),
    ],
)
def test_an_unleash_backed_plan_refuses_what_unleash_cannot_serve_with_the_field_named(
    data: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"{field}: Unleash serves whole percents"):
        parse_plan(data)


def test_fractional_stages_stay_fine_without_unleash_and_whole_ones_with_it() -> None:
    assert parse_plan({"stages": [{"percent": 0.5}, {"percent": 100}]}).unleash is None
    plan = parse_plan({"stages": [{"percent": 1}, {"percent": 100}], "backend": UNLEASH})
    assert plan.unleash is not None
    assert plan.unleash.feature == "new-checkout"


@pytest.mark.parametrize(
    "target",
    [{"feature": ""}, {"feature": "a/b"}, {"feature": "x" * 101}, {"feature": "f", "x": 1}],
)
def test_an_unleash_target_is_bounded(target: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"backend\.unleash"):
        parse_plan({"stages": [{"percent": 100}], "backend": {"unleash": target}})


def test_a_plan_served_by_unleash_may_require_other_flags() -> None:
    needs = [{"flag": "new-checkout", "variants": ["treatment"]}]
    stages = [{"percent": 1}, {"percent": 100}]
    served = parse_plan({"stages": stages, "backend": UNLEASH, "requires": needs})
    assert served.unleash is not None
    assert served.requires is not None
    plan = parse_plan({"stages": stages, "requires": needs})
    assert plan.requires is not None
    assert [(p.flag, p.variants) for p in plan.requires] == [("new-checkout", ["treatment"])]
