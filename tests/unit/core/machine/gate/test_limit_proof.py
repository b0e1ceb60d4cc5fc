"""A stage gated on absolute limits: what its size could catch, and the proof a plan may ask.

Not breached is "not shown above": at ``n`` requests only a rate above
:func:`detectable_rate` is caught with 80% power. With ``limits.require_proof`` the gate
holds until each limit's upper bound is at or below it, naming what it waits for; without
it a stage completes as before.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from controller.core.machine.gate import evaluate
from controller.core.rollouts import Limits
from controller.core.rollouts.plan import parse_plan
from controller.core.rollouts.rollout import Rollout, VerdictKind
from controller.core.stats.aggregates import ArmAggregate
from controller.core.stats.limits import (
    detectable_rate,
    limit_preview,
    proof_trials,
    rate_test,
    shown_under,
)
from controller.core.stats.regressing import Traffic
from tests.unit.core.machine.gate import test_gate as table

ALPHA, N_TUNE = 0.0125, 5000


@pytest.mark.parametrize(
    ("n", "ceiling", "low", "high"),
    [
        (125, 0.05, 0.34, 0.37),  # about ten seconds of a small ring: only a third failing
        (864, 0.05, 0.09, 0.10),
        (20_000, 0.05, 0.056, 0.058),
        (100_000, 0.05, 0.052, 0.054),  # nearer the limit as requests grow
        (864, 0.001, 0.02, 0.03),
    ],
)
def test_what_a_limit_stage_catches_at_its_size(
    n: int, ceiling: float, low: float, high: float
) -> None:
    rate = detectable_rate(n, ceiling, alpha=ALPHA, n_tune=N_TUNE)
    assert rate is not None
    assert low < rate < high


@pytest.mark.parametrize("n", [0, 3])
def test_too_few_requests_catch_no_rate(n: int) -> None:
    assert detectable_rate(n, 0.05, alpha=ALPHA, n_tune=N_TUNE) is None


@pytest.mark.parametrize("n", [125, 864, 20_000])
def test_the_detectable_rate_is_caught_80_percent_of_the_time(n: int) -> None:
    """Binomial draws at the figure: the gate's test shows it above the limit about 80% of
    the time at its last look (a little more: the z approximation at small n)."""
    rate = detectable_rate(n, 0.05, alpha=ALPHA, n_tune=N_TUNE)
    assert rate is not None
    rng, draws = random.Random(n), 400
    caught = sum(
        rate_test(_binomial(rng, n, rate), n, 0.05, alpha=ALPHA, n_tune=N_TUNE).regressed
        for _ in range(draws)
    )
    assert 0.72 <= caught / draws <= 0.92


@pytest.mark.parametrize(
    ("rate", "low", "high"),
    [
        (0.0, 300, 400),
        (0.01, 500, 600),
        (0.04, 7_000, 8_500),
        (0.049, 900_000, 1_200_000),  # a hair under: a million requests
        (0.05, None, None),  # at the limit: never shown under
        (0.07, None, None),
    ],
)
def test_requests_to_show_a_rate_under_its_limit(
    rate: float, low: int | None, high: int | None
) -> None:
    trials = proof_trials(rate, 0.05, alpha=ALPHA, n_tune=N_TUNE)
    if low is None or high is None:
        assert trials is None
        return
    assert trials is not None
    assert low <= trials <= high
    # the smallest such count: one fewer is not enough at the figure's own test
    before = rate_test(round(rate * (trials - 1)), trials - 1, 0.05, alpha=ALPHA, n_tune=N_TUNE)
    after = rate_test(round(rate * trials * 4), trials * 4, 0.05, alpha=ALPHA, n_tune=N_TUNE)
    assert shown_under(after)
    assert before.upper > rate  # an interval, not a point


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


# -- the gate --------------------------------------------------------------------------------


def limit_stage(**limits: object) -> Rollout:
    plan = parse_plan(
        {
            "stages": [
                {"audience": 'user_id in segment("staff")', "percent": 100},
                {"percent": 100},
            ],
            "guardrails": [{"metric": "error_rate"}],
            "limits": {"error_rate": 0.05, **limits},
        }
    )
    return table.rollout(plan).model_copy(update={"percent": 100.0})


def treated(requests: int, errors: int) -> ArmAggregate:
    return table.arm(units=200, requests=requests, errors=errors)


LATE = table.LATE + timedelta(days=1)


@pytest.mark.parametrize(
    ("require_proof", "requests", "errors", "kind"),
    [
        (False, 125, 1, VerdictKind.ADVANCE),  # today's behaviour: not shown above is enough
        (True, 125, 1, VerdictKind.HOLD),  # the bound is far above 5%
        (True, 864, 25, VerdictKind.HOLD),  # 2.9%: under 5%, not yet shown so
        (True, 20_000, 200, VerdictKind.ADVANCE),  # 1% of 20,000: shown under 5%
        (True, 20_000, 3_000, VerdictKind.ROLLBACK),  # a breach never waits for proof
    ],
)
def test_a_limit_stage_advances_only_once_its_limits_are_shown_kept_where_required(
    require_proof: bool, requests: int, errors: int, kind: VerdictKind
) -> None:
    rollout = limit_stage(require_proof=require_proof)
    data = table.data(treated(requests, errors), ArmAggregate())
    verdict = evaluate(rollout, data, LATE)
    assert verdict.kind is kind, verdict.reason
    entry = (verdict.evidence.limits or {})["error_rate"]
    assert entry.detectable is not None
    assert entry.detectable > 0.05
    if kind is VerdictKind.HOLD:
        assert verdict.reason.startswith("error_rate not yet shown under its limit")
        assert f"after {requests} requests" in verdict.reason
        assert verdict.untested == (verdict.reason,)  # the stage's needs list it
    if kind is VerdictKind.ADVANCE:
        said = "each limit shown under" if require_proof else "none required shown under"
        assert said in verdict.reason


def test_the_proof_is_not_counted_as_a_limit() -> None:
    limits = Limits(error_rate=0.05, latency_p95_ms=200, require_proof=True)
    assert limits.named() == {"error_rate": 0.05, "latency_p95_ms": 200}
    assert Limits(error_rate=0.05).require_proof is False


def test_the_preview_says_what_proof_costs_at_the_traffic() -> None:
    plan = limit_stage(require_proof=True).plan
    traffic = Traffic(requests_per_s=12.5, error_rate=0.01)
    (first, second) = limit_preview(plan, traffic)
    assert (first.index, second.index) == (0, 1)
    figure = first.limits[0]
    assert figure.name == "error_rate"
    assert figure.ceiling == 0.05
    needed = proof_trials(0.01, 0.05, alpha=plan.limit_alpha, n_tune=plan.n_tune)
    assert needed is not None
    assert figure.proof_seconds == pytest.approx(needed / 12.5)
    assert first.require_proof
    assert figure.detectable is not None
    assert figure.detectable > 0.05
    bad = limit_preview(plan, Traffic(requests_per_s=12.5, error_rate=0.06))[0].limits[0]
    assert bad.proof_seconds is None  # a base above the limit is never shown under
    assert math.isfinite(first.requests)
