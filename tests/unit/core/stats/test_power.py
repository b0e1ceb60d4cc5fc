"""The smallest regression a stage can catch: tables of cases, and the gate's own test."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from controller.core.common import BUCKET_COUNT, EDGES_MS
from controller.core.rollouts import DEFAULT_PLAN, Guardrail, Plan, Stage
from controller.core.stats import power
from controller.core.stats.arm_contents import estimate_degrees
from controller.core.stats.guardrails import fixed_horizon_test
from controller.core.stats.latency import latency_quantile_test
from controller.core.stats.power import (
    MAX_SECONDS,
    Z_POWER,
    Detectable,
    detectable,
    plan_preview,
    stage_preview,
)
from controller.core.stats.regressing import (
    Traffic,
    arms_at,
    exceedance_share,
    metric_model,
    stage_seconds,
)
from controller.core.stats.running_power import (
    Observed,
    observed_detectable,
    observed_seconds_to_detect,
    seconds_to_detect,
)
from controller.core.stats.sequential import (
    Direction,
    difference_test,
    mean_test,
    proportion_test,
)
from tests.support.clustered import Judged, Shape, Tier, Treated, simulate_clustered

ERRORS = Guardrail(metric="error_rate")
P99 = Guardrail(metric="latency_p99", tolerance=0.10, relative=True)
CONVERSIONS = Guardrail(metric="conversion_rate")
VALUES = Guardrail(metric="conversion_value")
BUSY = Traffic(requests_per_s=200.0)


def _plan(*guardrails: Guardrail, alpha: float = 0.05, final_look_share: float = 0.0) -> Plan:
    """A one-stage plan; with no final look unless asked: most tests below check the
    preview against the always-valid boundary alone, at each test's whole level."""
    return Plan(
        stages=[Stage(percent=5, min_duration=timedelta(minutes=30), min_units_per_arm=0)],
        guardrails=list(guardrails) or [ERRORS],
        alpha=alpha,
        final_look_share=final_look_share,
    )


def _effect(
    guardrail: Guardrail = ERRORS,
    *,
    percent: float = 5.0,
    seconds: float = 1800.0,
    traffic: Traffic = BUSY,
    plan: Plan | None = None,
) -> float:
    found = detectable(guardrail, percent, seconds, traffic, plan or _plan(guardrail))
    assert found.effect is not None, found.reason
    return found.effect


@pytest.mark.parametrize(
    ("changed", "bigger"),
    [
        ({"seconds": 600.0}, True),
        ({"seconds": 7200.0}, False),
        ({"percent": 1.0}, True),
        ({"percent": 25.0}, False),
        ({"traffic": replace(BUSY, requests_per_s=20.0)}, True),
        ({"traffic": replace(BUSY, design_effect=3.0)}, True),
        ({"traffic": replace(BUSY, error_rate=0.1)}, False),
        ({"guardrail": Guardrail(metric="error_rate", tolerance=0.005)}, True),
        ({"plan": _plan(alpha=0.001)}, True),
    ],
)
def test_an_error_rate_regression_grows_or_shrinks_with_what_the_stage_sees(
    changed: dict[str, object], bigger: bool
) -> None:
    base = _effect()
    other = _effect(**changed)  # type: ignore[arg-type]
    assert (other > base) is bigger, (base, other)


@pytest.mark.parametrize(
    ("guardrail", "traffic", "low", "high"),
    [
        # 5% of 200/s for 30 min: 18,000 treated requests at 1% errors.
        (ERRORS, BUSY, 0.2, 0.6),
        (CONVERSIONS, BUSY, 0.05, 0.3),
        # p99 with a 10% tolerance: at least +10%, and a few percent more at this traffic.
        (P99, BUSY, 0.10, 0.25),
        (Guardrail(metric="latency_exceedance", edge_ms=250.0), BUSY, 0.1, 0.6),
        (ERRORS, replace(BUSY, requests_per_s=2.0), 1.0, 20.0),
        # 900 treated conversions: ±3.3% at one standard error of values as spread as their mean.
        (VALUES, BUSY, 0.1, 0.3),
        (VALUES, replace(BUSY, value_cv=2.5), 0.25, 0.75),
    ],
)
def test_each_metric_has_a_figure_of_a_plausible_size(
    guardrail: Guardrail, traffic: Traffic, low: float, high: float
) -> None:
    assert low < _effect(guardrail, traffic=traffic) < high


@pytest.mark.parametrize(
    ("guardrail", "traffic", "seconds", "reason"),
    [
        (ERRORS, Traffic(requests_per_s=0.05), 1800.0, "not tested: 4 events"),
        (P99, Traffic(requests_per_s=2.0), 1800.0, "the gate needs 381"),
        # 5% of 0.5/s for 30 min at 5% conversions: 2 valued conversions in treatment.
        (VALUES, Traffic(requests_per_s=0.5), 1800.0, "not tested: 2 events"),
        (ERRORS, Traffic(requests_per_s=0.5, requests_per_unit=500.0), 1e5, "fewer than 8 units"),
    ],
)
def test_a_stage_that_cannot_test_a_guardrail_says_why(
    guardrail: Guardrail, traffic: Traffic, seconds: float, reason: str
) -> None:
    found = detectable(guardrail, 5.0, seconds, traffic, _plan(guardrail))
    assert found.effect is None
    assert reason in found.text()


def test_there_is_nothing_to_detect_without_a_control_arm() -> None:
    found = detectable(ERRORS, 100.0, 1800.0, BUSY, _plan())
    assert found.effect is None
    assert "control" in found.reason


@pytest.mark.parametrize(
    ("guardrail", "text"),
    [(ERRORS, "+"), (CONVERSIONS, "-")],
)
def test_the_text_names_the_harmful_direction(guardrail: Guardrail, text: str) -> None:
    found = detectable(guardrail, 5.0, 1800.0, BUSY, _plan(guardrail))
    assert found.text().startswith(text)
    assert found.text().endswith("%")


@pytest.mark.parametrize("guardrail", [ERRORS, CONVERSIONS, P99], ids=lambda g: g.metric)
@pytest.mark.parametrize("design_effect", [1.0, 2.5])
def test_at_the_figure_the_gates_test_regresses_on_the_20th_percentile_estimate(
    guardrail: Guardrail, design_effect: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preview follows the gate's boundary: difference_test, given the estimate 0.84 SE
    below the predicted Δ, with the same V and N, is exactly at its edge (the gate's V̂
    taken as V: its spread over the buckets of units is the next test's)."""
    monkeypatch.setattr(power, "estimate_degrees", lambda *_: math.inf)
    plan = _plan(guardrail)
    traffic = replace(BUSY, design_effect=design_effect, requests_per_unit=3.0)
    found = detectable(guardrail, 5.0, 1800.0, traffic, plan)
    assert found.effect is not None
    assert found.base is not None
    arms = arms_at(5.0, traffic, 1800.0)
    delta, variance = metric_model(guardrail, found.base, traffic, arms)[0](found.effect)
    tolerance = guardrail.tolerance * found.base if guardrail.relative else guardrail.tolerance
    sign = 1.0 if guardrail.lower_is_better else -1.0
    at = delta - Z_POWER * math.sqrt(variance)

    def regressed(estimate: float) -> bool:
        return difference_test(
            delta=sign * estimate,
            variance=variance,
            n=round(sum(arms.units)),
            direction="lower_is_better" if sign > 0 else "higher_is_better",
            tolerance=tolerance,
            alpha=plan.alpha_per_test,
            n_tune=plan.n_tune,
        ).regressed

    assert regressed(at * 1.001 + 1e-12)
    assert not regressed(at * 0.999)


def test_the_gates_estimate_of_its_spread_raises_the_figure_where_few_units_carry_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gate reads V from 64 buckets of units per arm and takes its design effect at least
    1: with units alike (128 degrees of freedom) that costs 2% of the figure; where 1% of units
    send 60% of the requests, 9 of them in each arm of a 10-minute stage, each in a bucket of
    its own, the estimate has 38 degrees and the figure grows by 4%."""
    alike = replace(BUSY, requests_per_s=55.5)
    heavy = replace(alike, requests_per_unit=18.8, heavy_share=0.01, heavy_requests=1150.0)
    assert estimate_degrees(alike, arms_at(50.0, alike, 600.0), 1.0) == pytest.approx(128.0)
    assert 30.0 < estimate_degrees(heavy, arms_at(50.0, heavy, 600.0), 1.0) < 45.0

    def effects() -> tuple[float, float]:
        return _effect(traffic=alike, percent=50.0, seconds=600.0), _effect(
            traffic=heavy, percent=50.0, seconds=600.0
        )

    spread = effects()
    monkeypatch.setattr(power, "estimate_degrees", lambda *_: math.inf)
    exact = effects()
    assert 1.01 < spread[0] / exact[0] < 1.03
    assert spread[1] / exact[1] > spread[0] / exact[0] + 0.01


def _final_look_power(
    rng: np.random.Generator, guardrail: Guardrail, factor: float, runs: int
) -> float:
    """How often proportion_test regresses on binomial arms of the preview's stage, the
    treatment's rate moved by ``factor`` times the predicted effect."""
    plan, traffic = _plan(guardrail), BUSY
    found = detectable(guardrail, 5.0, 1800.0, traffic, plan)
    assert found.effect is not None
    assert found.base is not None
    n_t, n_c = (round(n) for n in arms_at(5.0, traffic, 1800.0).requests)
    worse = 1.0 if guardrail.lower_is_better else -1.0
    rate_t = found.base * (1.0 + worse * found.effect * factor)
    hits_t, hits_c = rng.binomial(n_t, rate_t, runs), rng.binomial(n_c, found.base, runs)
    direction: Direction = "lower_is_better" if guardrail.lower_is_better else "higher_is_better"
    caught = sum(
        proportion_test(
            int(t), n_t, int(c), n_c, direction=direction, alpha=plan.alpha_per_test
        ).regressed
        for t, c in zip(hits_t, hits_c, strict=True)
    )
    return caught / runs


@pytest.mark.parametrize("guardrail", [ERRORS, CONVERSIONS], ids=lambda g: g.metric)
def test_synthetic_arms_at_the_figure_are_caught_four_times_in_five(guardrail: Guardrail) -> None:
    rng = np.random.default_rng(59)
    assert 0.74 <= _final_look_power(rng, guardrail, 1.0, 1000) <= 0.86
    assert _final_look_power(rng, guardrail, 0.5, 1000) < 0.35


def _hybrid_power(rng: np.random.Generator, factor: float, runs: int) -> tuple[float, float]:
    """With a final look: how often the stage's last look regresses on binomial arms of the
    preview's stage (error rate moved by ``factor`` times the predicted effect), by either
    test, and how much smaller the figure is than the boundary's alone."""
    plan, alone = _plan(ERRORS, final_look_share=0.5), _plan(ERRORS)
    found = detectable(ERRORS, 5.0, 1800.0, BUSY, plan)
    without = detectable(ERRORS, 5.0, 1800.0, BUSY, alone)
    assert found.effect is not None
    assert found.base is not None
    assert without.effect is not None
    n_t, n_c = (round(n) for n in arms_at(5.0, BUSY, 1800.0).requests)
    rate_t = found.base * (1.0 + found.effect * factor)
    hits_t, hits_c = rng.binomial(n_t, rate_t, runs), rng.binomial(n_c, found.base, runs)
    caught = 0
    for t, c in zip(hits_t, hits_c, strict=True):
        test = proportion_test(
            int(t),
            n_t,
            int(c),
            n_c,
            direction="lower_is_better",
            alpha=plan.sequential_alpha(ERRORS.key),
        )
        caught += test.regressed or fixed_horizon_test(test, plan.final_alpha(ERRORS.key)).regressed
    return caught / runs, found.effect / without.effect


def test_with_a_final_look_the_figure_is_caught_four_times_in_five() -> None:
    rng = np.random.default_rng(61)
    at_figure, sharper = _hybrid_power(rng, 1.0, 1000)
    assert 0.74 <= at_figure <= 0.86
    assert _hybrid_power(rng, 0.5, 1000)[0] < 0.35
    assert sharper < 0.9  # the final look sees smaller regressions than the boundary alone


def _histogram(samples: np.ndarray) -> tuple[int, ...]:
    fine = np.searchsorted(np.asarray(EDGES_MS), samples, side="right")
    return tuple(int(x) for x in np.bincount(fine, minlength=BUCKET_COUNT))


def test_synthetic_latency_at_the_figure_is_caught_four_times_in_five() -> None:
    """Log-normal latencies, treatment slower by the predicted factor: the gate's quantile
    test on their histograms regresses in about 80% of stages."""
    rng, plan, traffic = np.random.default_rng(95), _plan(P99), replace(BUSY, requests_per_s=40.0)
    found = detectable(P99, 5.0, 1800.0, traffic, plan)
    assert found.effect is not None
    n_t, n_c = (round(n) for n in arms_at(5.0, traffic, 1800.0).requests)
    mu, sigma, runs, caught = math.log(traffic.latency_median_ms), traffic.latency_sigma, 200, 0
    for _ in range(runs):
        slow = rng.lognormal(mu, sigma, n_t) * (1.0 + found.effect)
        result = latency_quantile_test(
            _histogram(slow),
            _histogram(rng.lognormal(mu, sigma, n_c)),
            0.99,
            relative_tolerance=0.10,
            alpha=plan.alpha_per_test,
        )
        caught += result.regressed
    assert 0.68 <= caught / runs <= 0.92


def test_a_stage_lasts_until_its_smaller_arm_has_its_units() -> None:
    stage = Stage(percent=1, min_duration=timedelta(minutes=30), min_units_per_arm=1000)
    # 1% of 10 units/s is 0.1 a second: 10,000 s for 1,000 units.
    seconds, by_units = stage_seconds(stage, Traffic(requests_per_s=50.0, requests_per_unit=5.0))
    assert seconds == pytest.approx(10_000.0)
    assert by_units
    assert stage_seconds(stage, Traffic(requests_per_s=5000.0)) == (1800.0, False)


def test_the_preview_covers_every_compared_stage_and_guardrail() -> None:
    previews = plan_preview(DEFAULT_PLAN, BUSY)
    assert [p.percent for p in previews] == [1, 5, 25, 50]
    assert all(len(p.guardrails) == 3 for p in previews)
    worst = [_size(p.worst()) for p in previews]
    assert worst == sorted(worst, reverse=True)


def _size(found: Detectable | None) -> float:
    assert found is not None
    return math.inf if found.effect is None else found.effect


def test_a_conversion_value_is_previewed_from_the_spread_of_its_values() -> None:
    """Values twice as spread (their CV) need about twice the regression to be seen; their
    mean only scales Δ, and the figure is relative; clustering by unit widens it."""
    plain = _effect(VALUES)
    assert _effect(VALUES, traffic=replace(BUSY, value_cv=2.0)) == pytest.approx(2 * plain, 0.1)
    found = detectable(VALUES, 5.0, 1800.0, replace(BUSY, value_mean=40.0), _plan(VALUES))
    assert found.effect == pytest.approx(plain)
    assert found.base == 40.0
    assert found.delta == pytest.approx(40.0 * plain)
    assert _effect(VALUES, traffic=replace(BUSY, design_effect=3.0)) > 1.5 * plain
    assert found.text().startswith("-")


def test_the_value_figure_counts_only_the_units_that_converted() -> None:
    """N of the gate's boundary is each arm's units, at most its valued conversions: at one
    request a unit, the conversions, so fewer units than requests do not move it."""
    one = replace(BUSY, requests_per_unit=1.0)
    assert _effect(VALUES, traffic=one) == pytest.approx(
        _effect(VALUES, traffic=replace(one, requests_per_unit=10.0)), rel=1e-9
    )


def _value_power(rng: np.random.Generator, factor: float, runs: int) -> float:
    """How often mean_test regresses on gamma-distributed values (CV 2) in arms of the
    preview's stage, treatment's values lower by ``factor`` times the predicted effect."""
    traffic = replace(BUSY, value_cv=2.0, value_mean=30.0)
    plan = _plan(VALUES)
    found = detectable(VALUES, 5.0, 1800.0, traffic, plan)
    assert found.effect is not None
    requests = arms_at(5.0, traffic, 1800.0).requests
    n_t, n_c = (round(r * traffic.conversion_rate) for r in requests)
    shape = 1.0 / traffic.value_cv**2  # a gamma's CV is 1/√shape
    caught = 0
    for _ in range(runs):
        t = rng.gamma(shape, 30.0 * (1.0 - found.effect * factor) / shape, n_t)
        c = rng.gamma(shape, 30.0 / shape, n_c)
        caught += mean_test(
            float(t.sum()),
            float((t * t).sum()),
            n_t,
            float(c.sum()),
            float((c * c).sum()),
            n_c,
            direction="higher_is_better",
            alpha=plan.alpha_per_test,
        ).regressed
    return caught / runs


def test_synthetic_values_at_the_figure_are_caught_four_times_in_five() -> None:
    """Within the preview's band: skewed values' sample variance falls below its mean more
    often than not, so the test regresses somewhat more often than 80% (86% in 3,000 runs)."""
    rng = np.random.default_rng(67)
    assert 0.74 <= _value_power(rng, 1.0, 600) <= 0.9
    assert _value_power(rng, 0.5, 600) < 0.35


def test_a_guardrails_own_design_effect_is_used_over_the_default() -> None:
    own = replace(BUSY, design_effect=1.0, design_effects={"error_rate": 4.0})
    plain, widened = stage_preview(DEFAULT_PLAN, 0, BUSY), stage_preview(DEFAULT_PLAN, 0, own)
    assert widened.guardrails[0].effect > plain.guardrails[0].effect  # type: ignore[operator]
    assert widened.guardrails[1].effect == plain.guardrails[1].effect


def test_the_time_to_detect_is_where_the_figure_reaches_the_effect() -> None:
    seconds = seconds_to_detect(DEFAULT_PLAN, 0, ERRORS, BUSY, 1.0)
    assert seconds is not None
    assert _effect(ERRORS, percent=1.0, seconds=seconds, plan=DEFAULT_PLAN) <= 1.0
    assert _effect(ERRORS, percent=1.0, seconds=seconds * 0.95, plan=DEFAULT_PLAN) > 1.0
    assert seconds_to_detect(DEFAULT_PLAN, 0, ERRORS, Traffic(requests_per_s=1e-4), 0.01) is None


OBSERVED = Observed(variance=4e-6, n=20_000, tolerance=0.0, alpha=0.00625, n_tune=5000,
                    elapsed_s=600.0)  # fmt: skip


@pytest.mark.parametrize(
    ("effect", "more"),
    [(10.0, 0.0), (0.5, None), (0.3, None)],
)
def test_a_running_stage_says_how_much_longer_it_needs(effect: float, more: float | None) -> None:
    remaining = observed_seconds_to_detect(OBSERVED, 0.01, effect)
    assert remaining is not None
    if more is not None:
        assert remaining == more
        return
    at = OBSERVED.elapsed_s + remaining
    assert observed_detectable(OBSERVED, at, 0.01) == pytest.approx(effect, rel=1e-6)


def test_a_running_stage_with_no_figure_says_none() -> None:
    assert observed_detectable(replace(OBSERVED, variance=math.inf), 600.0, 0.01) is None
    assert observed_seconds_to_detect(OBSERVED, None, 0.5) is None
    assert observed_seconds_to_detect(replace(OBSERVED, variance=1.0), 0.01, 1e-6) is None
    assert MAX_SECONDS > 0


@pytest.mark.parametrize(
    "bad",
    [
        {"requests_per_s": 0.0},
        {"requests_per_unit": 0.5},
        {"design_effect": 0.9},
        {"error_rate": 1.0},
        {"latency_sigma": 0.0},
        {"design_effects": {"error_rate": math.inf}},
    ],
)
def test_traffic_out_of_range_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="traffic out of range"):
        Traffic(**{"requests_per_s": 1.0, **bad})  # type: ignore[arg-type]


def test_exceedance_share_rounds_the_edge_up_as_the_gate_does() -> None:
    traffic = Traffic(requests_per_s=1.0, latency_median_ms=100.0, latency_sigma=0.5)
    assert 0.0 < exceedance_share(250.0, traffic) < exceedance_share(200.0, traffic) < 0.2


CLUSTERED = Shape("clustered", (Tier(1.0, 5, 15),), error_rate=0.008, failing_share=0.004,
                  units=2_000)  # fmt: skip
"""10 requests per unit, 0.4% of units failing half of theirs: an error rate of 0.997% whose
design effect is 1.98 ((E[π(1 - π)] + 11·Var(π)) / (R(1 - R)), E[m²]/E[m] = 11)."""


def _clustered_caught(share: float, runs: int) -> int:
    """Stages of 25% for 20 minutes (about 330 treated units) judged by the real gate, its
    final look included, treatment's error propensities raised to ``share`` of the figure."""
    plan = Plan(
        stages=[Stage(percent=25, min_duration=timedelta(minutes=20), min_units_per_arm=0)],
        guardrails=[ERRORS],
        alpha=0.0125,
    )
    traffic = Traffic(requests_per_s=1333 * 10 / 1200, requests_per_unit=10.0, design_effect=1.98,
                      error_rate=0.009968, failing_share=0.004, failing_rate=0.5)  # fmt: skip
    found = detectable(ERRORS, 25.0, 1200.0, traffic, plan)
    assert found.effect is not None
    target = traffic.error_rate * (1.0 + share * found.effect)
    # every unit's propensity times f, the failing units' (half) capped at 1 from f = 2 on
    rate_at_2 = 2.0 * traffic.error_rate
    factor = 2.0 * target / rate_at_2 if target <= rate_at_2 else (target - 0.004) / 0.007968
    caught = 0
    for run in range(runs):
        outcomes = simulate_clustered(
            Judged(plan, {}), CLUSTERED, seed=8_100 + run, treated=Treated(errors=factor)
        )
        caught += outcomes["plan"].stopped == "error_rate"
    return caught


def test_a_clustered_small_arm_at_the_figure_is_caught_by_the_gate_and_its_final_look() -> None:
    """The small version of ``bench/power.py``'s clustered stage: each run looks as its
    requests arrive and takes the final look at the stage's end, as the gate does."""
    runs = 50
    assert 0.6 * runs <= _clustered_caught(1.0, runs) <= runs - 2
    assert _clustered_caught(0.5, runs) < 0.5 * runs
