"""A plan's alpha weights: each gating guardrail's share of the rollout's alpha."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.core.common import ConfigError
from controller.core.machine.gate import evaluate
from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rollouts.plan_parts import Guardrail, Limits, Stage
from controller.core.rollouts.rollout import Phase, Rollout
from controller.core.stats.aggregates import ArmAggregate, FlagAggregates
from controller.core.stats.power import stage_preview
from controller.core.stats.regressing import Traffic
from tests.support.documents import as_read

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TWO_STAGES = [{"percent": 5}, {"percent": 50}, {"percent": 100, "min_duration": "0s"}]
GUARDS = [
    {"metric": "error_rate"},
    {"metric": "latency_p99", "tolerance": 0.1, "relative": True},
    {"metric": "latency_p95", "tolerance": 0.1, "relative": True, "dry_run": True},
]


def weighted(weights: dict[str, float] | None, **more: object) -> Plan:
    return parse_plan(
        {"stages": TWO_STAGES, "guardrails": GUARDS, "alpha_weights": weights, **more}
    )


@pytest.mark.parametrize(
    ("weights", "levels"),
    [
        # Two gating guardrails, two compared stages: 0.05 / 4 each with equal weights.
        (None, {"error_rate": 0.0125, "latency_p99": 0.0125, "latency_p95": 0.0125}),
        ({"error_rate": 1, "latency_p99": 1}, {"error_rate": 0.0125, "latency_p99": 0.0125}),
        ({"error_rate": 3, "latency_p99": 1}, {"error_rate": 0.01875, "latency_p99": 0.00625}),
        # One left out weighs 1; weights below 1 are shares all the same.
        ({"error_rate": 3}, {"error_rate": 0.01875, "latency_p99": 0.00625}),
        ({"error_rate": 0.3, "latency_p99": 0.1}, {"error_rate": 0.01875, "latency_p99": 0.00625}),
        # A dry-run guardrail spends none: it is tested at the equal split.
        ({"error_rate": 3}, {"latency_p95": 0.0125}),
    ],
)
def test_each_guardrail_is_tested_at_its_share_of_alpha(
    weights: dict[str, float] | None, levels: dict[str, float]
) -> None:
    the_plan = weighted(weights)
    for key, level in levels.items():
        assert the_plan.alpha_for(key) == pytest.approx(level), key


@pytest.mark.parametrize(
    "weights",
    [{"error_rate": 3}, {"error_rate": 0.001, "latency_p99": 1000}, {"latency_p99": 7}],
)
def test_the_gating_levels_still_sum_to_alpha(weights: dict[str, float]) -> None:
    the_plan = weighted(weights, limits={"error_rate": 0.05})
    stages = the_plan.alpha_budget()["stages"]
    spent = sum(the_plan.alpha_for(k) for k in ("error_rate", "latency_p99"))
    spent += the_plan.limit_count * the_plan.limit_alpha
    assert isinstance(stages, int)
    assert spent * stages == pytest.approx(the_plan.alpha)


def test_a_limit_weighs_one_among_the_weighted_guardrails() -> None:
    the_plan = weighted({"error_rate": 2}, limits={"error_rate": 0.05})
    # Weights 2 (error_rate) + 1 (latency_p99) + 1 (the limit); 3 stages (the limited one too).
    assert the_plan.limit_alpha == pytest.approx(0.05 / 4 / 3)
    assert the_plan.alpha_for("error_rate") == pytest.approx(0.05 * 2 / 4 / 3)


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        (
            {"error_rat": 2},
            "alpha_weights.error_rat: no gating guardrail of this plan has this key",
        ),
        ({"latency_p95": 2}, "alpha_weights.latency_p95: a dry-run guardrail never acts"),
        ({"error_rate": 0}, "alpha_weights.error_rate: Input should be greater than 0"),
        ({"error_rate": -1}, "alpha_weights.error_rate: Input should be greater than 0"),
        ({"error_rate": 1001}, "alpha_weights.error_rate: Input should be less than or equal"),
        ({"error_rate": float("inf")}, "alpha_weights.error_rate: Input should be a finite"),
        ({"error_rate": "lots"}, "alpha_weights.error_rate: Input should be a valid number"),
        ({f"g{i}": 1 for i in range(21)}, "alpha_weights: Dictionary should have at most 20"),
    ],
)
def test_a_weight_that_names_no_gating_guardrail_or_is_out_of_bounds_is_refused(
    weights: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_plan({"stages": TWO_STAGES, "guardrails": GUARDS, "alpha_weights": weights})


def test_the_budget_names_each_share_only_when_the_plan_weighs() -> None:
    assert "weights" not in weighted(None).alpha_budget()
    shares: object = weighted({"error_rate": 3}).alpha_budget()["weights"]
    assert shares == {
        "error_rate": pytest.approx(0.75),
        "latency_p99": pytest.approx(0.25),
    }


def _arm(units: int, errors: int) -> ArmAggregate:
    return ArmAggregate(exposures=units, units=units, requests=units * 10, errors=errors)


def test_the_decision_shows_the_shares_and_each_test_its_own_level() -> None:
    the_plan = Plan(
        stages=[Stage(percent=10, min_duration=timedelta(minutes=30)), Stage(percent=100)],
        guardrails=[Guardrail(metric="error_rate"), Guardrail(metric="conversion_rate")],
        alpha_weights={"error_rate": 4},
        limits=Limits(error_rate=0.5),
    )
    rollout = Rollout(
        flag="f", rollout_id="r", plan=the_plan, phase=Phase.RUNNING, stage=0,
        stage_started_at=T0, salt="s", flag_version=1, stage_versions={0: [1]},
        started_at=T0, updated_at=T0,
    )  # fmt: skip
    data = FlagAggregates("f", frozenset({1}), _arm(1_000, 50), _arm(9_000, 450))
    evidence = as_read(evaluate(rollout, data, T0 + timedelta(minutes=5)).evidence)
    assert evidence["alpha"]["weights"] == {
        "error_rate": pytest.approx(4 / 6),
        "conversion_rate": pytest.approx(1 / 6),
    }
    # Two stages: the compared one and the limited one at 100%; of each level, what the
    # final look does not spend (1 - 0.5, by default) is the always-valid boundary's.
    assert evidence["alpha"]["final_look"] == 0.5
    assert evidence["guardrails"]["error_rate"]["alpha"] == pytest.approx(0.05 * 4 / 6 / 2 * 0.5)
    assert evidence["guardrails"]["conversion_rate"]["alpha"] == pytest.approx(0.05 / 6 / 2 * 0.5)


def test_the_power_preview_takes_each_guardrails_own_level() -> None:
    equal, heavy = weighted(None), weighted({"error_rate": 3})
    traffic = Traffic(requests_per_s=200.0)

    def effects(the_plan: Plan) -> dict[str, float | None]:
        found = stage_preview(the_plan, 0, traffic).guardrails
        return {d.guardrail: d.effect for d in found}

    before, after = effects(equal), effects(heavy)
    assert before["error_rate"] is not None
    assert after["error_rate"] is not None
    assert after["error_rate"] < before["error_rate"], "a larger share detects less"
    assert before["latency_p99"] is not None
    assert after["latency_p99"] is not None
    assert after["latency_p99"] > before["latency_p99"]
