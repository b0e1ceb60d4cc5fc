"""Absolute limits: the gate of a stage that serves 100% of its audience.

Such a stage has no concurrent control, so nothing is compared: the treated
units' own rates are tested against limits the plan declares
(``limits: {error_rate: 0.01, latency_p95_ms: 200}``), and the evidence says
``comparison: none (no concurrent control)``.

Each limit is a one-sided test of one rate against a fixed value, with the
boundary of :mod:`controller.core.stats.sequential`, so it is valid under
continuous peeking like the guardrails: for a rate ``f`` of ``n`` trials
against the limit ``L``, Δ = f and the tolerance is L, with the variance at
least the limit's own, ``max(f(1 - f), L(1 - L)) / n`` (as the guardrails use
at least the null's). It is breached iff ``f - L`` exceeds the half-width.

* ``error_rate``: errors per request;
* ``latency_p95_ms`` / ``latency_p99_ms``: p95 ≤ X is the share of requests
  slower than X at most 5% (1% for p99); slower is counted from the
  histogram's first bucket at or above X (:func:`latency.exceedance_bucket`),
  so X is read at most about 12% higher.

**What a limit catches.** Not breached is "not shown above", never "shown under": at
``n`` trials the test shows only a true rate above :func:`detectable_rate` with 80% power
(the rate ``p`` with ``p = L + h(n, V(p)) + z_0.8·√(p(1 - p)/n)``, read backwards from
the same boundary as the preview's guardrails, :mod:`~controller.core.stats.power`). A plan
with ``limits.require_proof`` asks for more: the rate *shown* under each limit, its upper
bound below it (:func:`shown_under`), which at a true rate ``p`` below ``L`` takes
:func:`proof_trials` trials with 80% power (``p + h(n, V(p)) + z_0.8·√(p(1 - p)/n) < L``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from controller.core.rollouts import Limits, Plan
from controller.core.stats.aggregates import ArmAggregate
from controller.core.stats.latency import exceedance_bucket
from controller.core.stats.power import MAX_SECONDS, Z_POWER
from controller.core.stats.regressing import Traffic
from controller.core.stats.sequential import (
    SequentialResult,
    difference_test,
    sequential_half_width,
    sequential_rho,
)
from controller.core.wire import GuardrailTest, LimitTest

NO_CONTROL = "none (no concurrent control)"
"""What the evidence of a stage without control says its comparison is."""
QUANTILE_SHARES = {"latency_p95_ms": 0.05, "latency_p99_ms": 0.01}
"""The share of requests a latency limit lets be slower than it."""
MAX_PROOF_TRIALS = 2**40
"""Past about a trillion requests a rate is taken never to be shown under its limit."""
_BISECT = 40


def rate_test(count: int, n: int, limit: float, *, alpha: float, n_tune: int) -> SequentialResult:
    """Whether a rate of ``count`` in ``n`` is shown above ``limit`` (sequential, one-sided)."""
    rate = count / n if n else 0.0
    null = limit * (1.0 - limit)
    variance = max(rate * (1.0 - rate), null) / n if n else float("inf")
    return difference_test(
        delta=rate,
        variance=variance,
        n=n,
        direction="lower_is_better",
        tolerance=limit,
        alpha=alpha,
        n_tune=n_tune,
    )


def detectable_rate(n: int, ceiling: float, *, alpha: float, n_tune: int) -> float | None:
    """The smallest true rate that ``n`` trials show above ``ceiling`` with 80% power; None
    when no rate up to 1 is (too few trials)."""

    def caught(rate: float) -> bool:
        noise = math.sqrt(rate * (1.0 - rate) / n)
        return rate - rate_test_width(rate, n, ceiling, alpha, n_tune) - Z_POWER * noise > ceiling

    if n <= 0 or not caught(1.0):
        return None
    # One crossing: below 1 - L the margin p - L - c·√(p(1 - p)) is convex and negative at
    # the limit, above it it grows; so bisection finds the smallest rate caught.
    low, high = ceiling, 1.0
    for _ in range(_BISECT):
        middle = (low + high) / 2
        low, high = (low, middle) if caught(middle) else (middle, high)
    return high


def proof_trials(rate: float, ceiling: float, *, alpha: float, n_tune: int) -> int | None:
    """How many trials at a true ``rate`` show it under ``ceiling`` (the upper bound below
    it) with 80% power; None when the rate is not under it or it takes over
    :data:`MAX_PROOF_TRIALS`."""

    def shown(n: int) -> bool:
        noise = math.sqrt(rate * (1.0 - rate) / n)
        return rate + rate_test_width(rate, n, ceiling, alpha, n_tune) + Z_POWER * noise < ceiling

    if not 0.0 <= rate < ceiling:
        return None
    high = 1
    while not shown(high):
        if high >= MAX_PROOF_TRIALS:
            return None
        high *= 2
    low = high // 2  # not shown at low (or 0), shown at high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if shown(middle) else (middle, high)
    return high


def rate_test_width(rate: float, n: int, ceiling: float, alpha: float, n_tune: int) -> float:
    """The half-width of :func:`rate_test` at an observed ``rate`` of ``n`` trials."""
    variance = max(rate * (1.0 - rate), ceiling * (1.0 - ceiling)) / n
    rho = sequential_rho(alpha, n_tune)
    return sequential_half_width(variance=variance, n=n, alpha=alpha, rho=rho)


def shown_under(test: SequentialResult | GuardrailTest) -> bool:
    """The rate's upper bound is at or below its limit: shown under it (the limit is an "at
    most"), not only not shown above."""
    return test.upper <= test.tolerance


@dataclass(frozen=True, slots=True)
class LimitFigure:
    """What one limit's test can say at a stage's end, at the expected traffic."""

    name: str
    limit: float
    """The plan's limit as declared (a share, or ms)."""
    ceiling: float
    """The rate the limit holds it to: the error rate's limit, or the share of requests a
    latency limit lets be slower."""
    base: float
    """The rate the traffic is expected to show."""
    detectable: float | None
    """The smallest true rate caught at the stage's minimum (80% power); None: none."""
    proof_seconds: float | None
    """How long the traffic takes to show the base rate under the ceiling (80% power);
    None: never (the base is not under it, or it takes past 30 days)."""


@dataclass(frozen=True, slots=True)
class LimitStagePreview:
    """A stage without control (100% of its audience) gated on the plan's limits."""

    index: int
    seconds: float
    """Its minimum duration."""
    requests: float
    """The requests it sees in that time."""
    limits: tuple[LimitFigure, ...]
    require_proof: bool


def limit_preview(plan: Plan, traffic: Traffic) -> list[LimitStagePreview]:
    """Each stage gated on the plan's limits, with what each limit catches at its minimum
    and how long showing it under takes, at ``traffic`` (all of it treated)."""
    limits = plan.limits
    if limits is None:
        return []
    out = []
    for index, stage in enumerate(plan.stages):
        if stage.percent < 100:
            continue
        seconds = stage.min_duration.total_seconds()
        requests = traffic.requests_per_s * seconds
        figures = tuple(
            _figure(name, value, requests, traffic, plan) for name, value in limits.named().items()
        )
        out.append(LimitStagePreview(index, seconds, requests, figures, limits.require_proof))
    return out


def _figure(name: str, value: float, requests: float, traffic: Traffic, plan: Plan) -> LimitFigure:
    alpha, n_tune = plan.limit_alpha, plan.n_tune
    ceiling = QUANTILE_SHARES.get(name, value)
    base = traffic.error_rate if name == "error_rate" else _slower(value, traffic)
    trials = proof_trials(base, ceiling, alpha=alpha, n_tune=n_tune)
    seconds = None if trials is None else trials / traffic.requests_per_s
    return LimitFigure(
        name=name,
        limit=value,
        ceiling=ceiling,
        base=base,
        detectable=detectable_rate(int(requests), ceiling, alpha=alpha, n_tune=n_tune),
        proof_seconds=None if seconds is None or seconds > MAX_SECONDS else seconds,
    )


def _slower(limit_ms: float, traffic: Traffic) -> float:
    """The share of requests slower than ``limit_ms`` of the traffic's log-normal latency."""
    z = math.log(limit_ms / traffic.latency_median_ms) / traffic.latency_sigma
    return 1.0 - NormalDist().cdf(z)


def unproven(limits: Limits | None, tests: dict[str, SequentialResult]) -> list[str]:
    """Why each limit is not yet shown under, where the plan requires it; empty otherwise."""
    if limits is None or not limits.require_proof:
        return []
    return [
        f"{name} not yet shown under its limit (limits.require_proof): {test.delta:.4g} with"
        f" upper bound {test.upper:.4g} against {test.tolerance:.4g} after {test.n} requests"
        for name, test in tests.items()
        if not shown_under(test)
    ]


def without_control(limits: Limits | None) -> str:
    """Why a stage without control may complete, in its reason's words."""
    if limits is None:
        return "no concurrent control: no guardrail compares arms"
    if limits.require_proof:
        return "no concurrent control: each limit shown under"
    return "no concurrent control: no limit shown breached, none required shown under"


def limit_tests(
    limits: Limits, treated: ArmAggregate, *, alpha: float, n_tune: int
) -> dict[str, SequentialResult]:
    """Each declared limit's test on the treated units' counts."""
    out: dict[str, SequentialResult] = {}
    for name, value in limits.named().items():
        if name == "error_rate":
            count, n, limit = treated.errors, treated.requests, value
        else:
            hist = treated.latency_histogram
            count, n = sum(hist[exceedance_bucket(value) :]), sum(hist)
            limit = QUANTILE_SHARES[name]
        out[name] = rate_test(count, n, limit, alpha=alpha, n_tune=n_tune)
    return out


def limit_parts(
    limits: Limits, tests: dict[str, SequentialResult]
) -> dict[str, str | dict[str, LimitTest]]:
    """What the decision records: no comparison, and each limit with its test."""
    return {
        "comparison": NO_CONTROL,
        "limits": {
            name: LimitTest(
                limit=value,
                test=GuardrailTest.model_validate(tests[name].evidence()),
                detectable=_detectable(tests[name]),
            )
            for name, value in limits.named().items()
        },
    }


def _detectable(test: SequentialResult) -> float | None:
    return detectable_rate(test.n, test.tolerance, alpha=test.alpha, n_tune=test.n_tune)
