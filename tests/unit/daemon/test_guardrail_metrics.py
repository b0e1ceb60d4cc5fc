"""Per-guardrail gauges: what the gate saw, as Prometheus text, bounded and removed when done."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from controller.core.machine.gate import evaluate
from controller.core.rollouts.rollout import Phase, Rollout, Verdict, VerdictKind
from controller.core.wire import GateEvidence, JsonObject, JsonValue
from controller.daemon.metrics import Metrics
from controller.settings import EngineSettings
from tests.support.documents import as_read, sequential_test
from tests.unit.core.machine.gate.test_gate import EMPTY, HEALTHY, LATE, arm, data, rollout

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: Metrics) -> Samples:
    """Every guardrail and SRM sample, parsed back from the exposition text."""
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith(("rollout_guardrail_", "rollout_srm_"))
    }


def value(found: Samples, name: str, flag: str = "f", metric: str | None = None) -> float:
    labels = {"flag": flag} if metric is None else {"flag": flag, "metric": metric}
    return found[(name, tuple(sorted(labels.items())))]


def gated() -> Verdict:
    return evaluate(rollout(), HEALTHY, LATE)


def test_the_gauges_show_each_guardrail_and_move_with_the_evidence() -> None:
    metrics = Metrics()
    healthy = gated()
    assert metrics.guardrails.record("f", healthy, max_flags=10)
    before = samples(metrics)
    test = as_read(healthy.evidence)["guardrails"]["error_rate"]
    assert value(before, "rollout_guardrail_delta", metric="error_rate") == pytest.approx(
        test["delta"]
    )
    assert value(before, "rollout_guardrail_lower", metric="error_rate") < test["delta"]
    assert value(before, "rollout_guardrail_upper", metric="error_rate") > test["delta"]
    assert value(before, "rollout_guardrail_regressed", metric="error_rate") == 0
    # conversion rate is higher-is-better: harm begins below -tolerance
    assert value(before, "rollout_guardrail_tolerance", metric="latency_p99") > 0
    assert value(before, "rollout_guardrail_tolerance", metric="conversion_rate") == 0
    srm = value(before, "rollout_srm_p_value")
    assert 0 <= srm <= 1
    # When errors rise in treatment, the gauges move and the breach shows
    worse = evaluate(rollout(), data(arm(units=1_111, errors=650), arm()), LATE)
    assert worse.kind is VerdictKind.ROLLBACK
    metrics.guardrails.record("f", worse, max_flags=10)
    after = samples(metrics)
    for name in ("rollout_guardrail_delta", "rollout_guardrail_lower"):
        assert value(after, name, metric="error_rate") > value(before, name, metric="error_rate")
    assert value(after, "rollout_guardrail_regressed", metric="error_rate") == 1
    assert value(after, "rollout_guardrail_p_value", metric="error_rate") < 0.05
    # When the split drifts far from 10%, the SRM p-value falls
    skewed = evaluate(rollout(), data(arm(units=2_000), arm(units=10_000)), LATE)
    metrics.guardrails.record("f", skewed, max_flags=10)
    assert value(samples(metrics), "rollout_srm_p_value") < min(srm, 0.001)


def test_a_metric_without_enough_data_has_no_series() -> None:
    metrics = Metrics()
    metrics.guardrails.record("f", gated(), max_flags=10)
    metrics.guardrails.record("f", evaluate(rollout(), EMPTY, LATE), max_flags=10)
    found = samples(metrics)
    assert not [k for k in found if "metric" in dict(k[1])]
    assert value(found, "rollout_srm_p_value") == 1.0


def test_at_most_max_flags_are_tracked_and_the_rest_counted() -> None:
    metrics = Metrics()
    for flag in ("a", "b", "c"):
        metrics.guardrails.record(flag, gated(), max_flags=2)
    flags = {dict(k[1])["flag"] for k in samples(metrics) if k[1]}
    assert flags == {"a", "b"}
    assert samples(metrics)[("rollout_guardrail_untracked_total", ())] == 1
    # a tracked flag is still updated at the limit; a freed slot is taken
    assert metrics.guardrails.record("a", gated(), max_flags=2)
    metrics.guardrails.forget("b")
    assert metrics.guardrails.record("c", gated(), max_flags=2)


@pytest.mark.parametrize(
    ("how", "gone"),
    [
        ("forget", {"a"}),
        ("retain", {"b"}),
        ("finished", {"a"}),
    ],
)
def test_series_of_ended_or_handed_over_rollouts_are_removed(how: str, gone: set[str]) -> None:
    metrics = Metrics()
    for flag in ("a", "b"):
        metrics.guardrails.record(flag, gated(), max_flags=10)
    if how == "forget":
        metrics.guardrails.forget("a")
    elif how == "retain":
        metrics.guardrails.retain(["a"])
    else:
        done: Rollout = rollout().model_copy(update={"phase": Phase.ROLLED_BACK})
        metrics.count_actions("a", done, [])
    flags = {dict(k[1]).get("flag") for k in samples(metrics) if k[1]}
    assert flags == {"a", "b"} - gone


@pytest.mark.parametrize(
    "guardrails",
    [
        {"../../etc": {"delta": 1.0}},
        {"error_rate": "insufficient data", "made_up": {"delta": 2.0}},
        {"error_rate:checkout_completed": {"delta": 1.0}, "latency_p99:x": {"delta": 1.0}},
        {"conversion_rate:bad name": {"delta": 1.0}, "conversion_rate:": {"delta": 1.0}},
        {"error_rate": {"delta": "NaN?", "lower": "-inf", "upper": "inf", "p_value": True}},
        "not a mapping",
    ],
)
def test_odd_evidence_makes_no_odd_series(guardrails: JsonValue) -> None:
    metrics = Metrics()
    verdict = Verdict(
        VerdictKind.HOLD, "x", None, GateEvidence.tolerant({"guardrails": guardrails, "srm": "?"})
    )
    metrics.guardrails.record("f", verdict, max_flags=10)
    found = samples(metrics)
    metric_labels = {dict(k[1]).get("metric") for k in found if k[1]}
    assert metric_labels <= {"error_rate"}
    for (name, _), number in found.items():
        if name == "rollout_guardrail_lower":
            assert number == float("-inf")
        if name == "rollout_guardrail_upper":
            assert number == float("inf")
    assert not [k for k in found if k[0] in ("rollout_guardrail_delta", "rollout_srm_p_value")]


def test_the_flag_limit_is_a_setting_with_a_bounded_default() -> None:
    assert EngineSettings().max_flag_series == 200
    with pytest.raises(ValidationError):
        EngineSettings(max_flag_series=-1)


def test_a_guardrail_on_a_named_conversion_has_its_own_series() -> None:
    metrics = Metrics()
    tests: JsonObject = {
        "conversion_rate": sequential_test(delta=0.01),
        "conversion_rate:checkout_completed": sequential_test(delta=-0.02, regressed=True),
    }
    verdict = Verdict(VerdictKind.HOLD, "x", None, GateEvidence.tolerant({"guardrails": tests}))
    metrics.guardrails.record("f", verdict, max_flags=10)
    found = samples(metrics)
    named = "conversion_rate:checkout_completed"
    assert value(found, "rollout_guardrail_delta", metric=named) == pytest.approx(-0.02)
    assert value(found, "rollout_guardrail_regressed", metric=named) == 1
    assert value(found, "rollout_guardrail_regressed", metric="conversion_rate") == 0
