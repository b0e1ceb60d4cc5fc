"""The sequential test behind the guardrails: one-sided, valid under continuous peeking.

Pure functions of counts; no I/O and nothing beyond the standard library.
Below, ``a`` is the level alpha and ``r`` the mixture parameter rho.

**The boundary**: the asymptotic confidence sequence of Waudby-Smith,
Arnold, Wu, McAuliffe and Ramdas, *Time-uniform central limit theory and
asymptotic confidence sequences* (arXiv:2103.06476), in the one-sided form of
GrowthBook's gbstats (``SequentialOneSidedTreatmentLesserTTest`` and its
mirror)::

    Δ = m_T - m_C        V = v_T/n_T + v_C/n_C        N = n_T + n_C
    r = √((-2 ln(2a) + ln(1 - 2 ln(2a))) / N_tune)
    h = √(N·V · 2(N·r² + 1)/(N·r)² · ln(1 + √(N·r² + 1)/(2a)))

``ln(2a)`` is the logarithm of 2a, as in gbstats, where the one-sided test
tunes r for level 2a. Only that reading reproduces the worked example in
docs/architecture.md, *Statistics*: 650 vs 500 errors in 100,000 requests
per arm give h = 1.0797e-3 and a lower bound of 4.20e-4 (1.07965e-3 with the
arms' own variances, 1.07971e-3 with the pooled one used here). r makes the
boundary tightest near N = N_tune. A lower-is-better metric regresses iff Δ - h > δ, a
higher-is-better one iff Δ + h < -δ, with δ ≥ 0 an absolute tolerance. With
no data in an arm the width is infinite; with V = 0 it is zero; neither ever
regresses.

**Always-valid p-value**: the smallest level a' at which the boundary, with r
kept at the configured level as gbstats does, leaves the tolerance; so
p < a exactly when the test regresses. Solving h(a') = m, where m is how far
Δ lies beyond δ on the harmful side, gives it in closed form::

    L = m²·(N·r)² / (N·V · 2(N·r² + 1))        p = min(1, √(N·r² + 1) / (2·(e^L - 1)))

**Counts per exposure** (crashes, exceptions: a count with no denominator of its
own) use the Poisson v = λ, floored at half an event. **Proportions** use
v = p(1 - p); an arm with no events, or only events, gets the variance of half
an event, f(1 - f) with f = 0.5/n, so that a handful of requests cannot claim
certainty. **Means** use the sample variance from sums.
In all three, V is never below its value under the null of identical arms, the
pooled estimate (see :func:`_at_least_null`). Latency tests
(:mod:`controller.core.stats.latency`) feed this same boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from controller.core.common import evidence_of
from controller.core.wire import JsonObject

Direction = Literal["lower_is_better", "higher_is_better"]

DEFAULT_ALPHA = 0.05
DEFAULT_N_TUNE = 5000
_MAX_EXPONENT = 700.0
"""Beyond this e^L overflows a float (near 709): the p-value is then 0."""
_DIRECTIONS: tuple[Direction, ...] = ("lower_is_better", "higher_is_better")


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """The outcome of one sequential comparison of treatment against control."""

    delta: float
    variance: float
    n: int
    half_width: float
    lower: float
    upper: float
    regressed: bool
    direction: Direction
    tolerance: float
    alpha: float
    n_tune: int
    p_value: float
    unit_of_analysis: Literal["unit", "request"] = "request"
    """What N counts and V is taken over: units (the unit of assignment, the variance from
    buckets of units) or requests taken as independent (a source with no units)."""
    design_effect: float | None = None
    """V on units over V as if requests were independent; None when tested on requests."""
    widening: float | None = None
    """The interval's half-width on units over its half-width as if requests were
    independent: how much longer the stage needs to see the same difference."""

    def evidence(self) -> JsonObject:
        """Every field, JSON-ready (infinities as the strings ``inf`` / ``-inf``)."""
        return {**evidence_of(self)}


# --- the sequential boundary --------------------------------------------------------------


@lru_cache(maxsize=256)
def sequential_rho(alpha: float, n_tune: float) -> float:
    """rho of the one-sided boundary at level alpha, tightest near ``n_tune`` units in all
    (a plan has a few levels: each is worked out once)."""
    if not 0.0 < alpha < 0.5 or not n_tune > 0:
        raise ValueError(f"need 0 < alpha < 0.5 (one-sided) and n_tune > 0: {alpha}, {n_tune}")
    log_term = -2.0 * math.log(2.0 * alpha)
    return math.sqrt((log_term + math.log1p(log_term)) / n_tune)


def sequential_half_width(*, variance: float, n: int, alpha: float, rho: float) -> float:
    """h for N = ``n`` units in all and V = ``variance`` of the difference."""
    if not (alpha > 0.0 and rho > 0.0):
        raise ValueError(f"need alpha > 0 and rho > 0, got {alpha} and {rho}")
    if n <= 0 or math.isinf(variance):
        return math.inf
    spread = n * rho * rho + 1.0
    factor = 2.0 * spread / (n * rho) ** 2
    return math.sqrt(n * variance * factor * math.log1p(math.sqrt(spread) / (2.0 * alpha)))


def _check_settings(direction: Direction, tolerance: float) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")
    if not tolerance >= 0.0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")


def _margin(delta: float, tolerance: float, direction: Direction) -> float:
    """How far Δ lies beyond the tolerance on the harmful side (≤ 0: not beyond)."""
    return delta - tolerance if direction == "lower_is_better" else -delta - tolerance


def _p_value(margin: float, variance: float, n: int, rho: float) -> float:
    """Solve h(a') = margin for a' with rho held fixed (see the module docstring)."""
    if margin <= 0.0 or n <= 0 or not 0.0 < variance < math.inf:
        return 1.0
    spread = n * rho * rho + 1.0
    exponent = margin * margin * (n * rho) ** 2 / (n * variance * 2.0 * spread)
    if exponent > _MAX_EXPONENT:
        return 0.0
    return min(1.0, math.sqrt(spread) / (2.0 * math.expm1(exponent)))


def difference_test(
    *,
    delta: float,
    variance: float,
    n: int,
    direction: Direction,
    tolerance: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> SequentialResult:
    """The sequential test on an estimated difference Δ with variance V and N units in all."""
    _check_settings(direction, tolerance)
    if not variance >= 0.0 or n < 0 or math.isnan(delta):
        raise ValueError(f"need variance >= 0, n >= 0 and a number delta: {variance}, {n}")
    rho = sequential_rho(alpha, n_tune)
    width = sequential_half_width(variance=variance, n=n, alpha=alpha, rho=rho)
    margin = _margin(delta, tolerance, direction)
    return SequentialResult(
        delta=delta,
        variance=variance,
        n=n,
        half_width=width,
        lower=delta - width,
        upper=delta + width,
        regressed=variance > 0.0 and margin > width,
        direction=direction,
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
        p_value=_p_value(margin, variance, n, rho),
    )


def sequential_test(
    *,
    mean_t: float,
    var_t: float,
    n_t: int,
    mean_c: float,
    var_c: float,
    n_c: int,
    direction: Direction,
    tolerance: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> SequentialResult:
    """Compare treatment against control from each arm's mean, per-unit variance and size."""
    if n_t < 0 or n_c < 0:
        raise ValueError(f"arm sizes must be >= 0, got {n_t} and {n_c}")
    empty = n_t == 0 or n_c == 0
    variance = math.inf if empty else var_t / n_t + var_c / n_c
    return difference_test(
        delta=mean_t - mean_c,
        variance=variance,
        n=n_t + n_c,
        direction=direction,
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
    )


# --- proportions and means ----------------------------------------------------------------


def _check_count(successes: int, n: int) -> None:
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")


def bernoulli_variance(successes: float, n: float) -> float:
    """p(1-p) per event of a rate, floored as :func:`proportion_test` floors it."""
    return _bernoulli_variance(successes, n)


def mean_and_variance(total: float, total_sq: float, n: int) -> tuple[float, float]:
    """Mean and sample variance from sums (an infinite variance with fewer than two)."""
    return _mean_and_variance(total, total_sq, n)


def _bernoulli_variance(successes: float, n: float) -> float:
    """p(1-p), at least that of half an event so that 0/n and n/n keep some noise."""
    if n == 0:
        return 0.0
    rate, floor = successes / n, 0.5 / n
    return max(rate * (1.0 - rate), floor * (1.0 - floor))


def proportion_test(
    successes_t: int,
    n_t: int,
    successes_c: int,
    n_c: int,
    *,
    direction: Direction,
    tolerance: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> SequentialResult:
    """Sequential test of a rate (errors per request, conversions per unit): v = p(1-p).

    V is the larger of the arms' own v_T/n_T + v_C/n_C and the same with the
    pooled rate (see :func:`_at_least_null`).
    """
    _check_count(successes_t, n_t)
    _check_count(successes_c, n_c)
    own = _arm_variance(
        _bernoulli_variance(successes_t, n_t), n_t, _bernoulli_variance(successes_c, n_c), n_c
    )
    pooled = _bernoulli_variance(successes_t + successes_c, n_t + n_c)
    return difference_test(
        delta=(successes_t / n_t if n_t else 0.0) - (successes_c / n_c if n_c else 0.0),
        variance=_at_least_null(own, pooled, n_t, n_c),
        n=n_t + n_c,
        direction=direction,
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
    )


def poisson_variance(count: float, n: float) -> float:
    """λ per exposure of a count with no denominator of its own (crashes per exposure), at
    least that of half an event, as :func:`_bernoulli_variance` floors a rate."""
    return max(count, 0.5) / n if n else 0.0


def count_rate_test(
    count_t: int,
    n_t: int,
    count_c: int,
    n_c: int,
    *,
    tolerance: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> SequentialResult:
    """Sequential test of a count per exposure (crashes, exceptions): lower is better.

    Taken as if every event were an independent Poisson draw, v = λ per exposure, the
    larger of the arms' own and the pooled λ (:func:`_at_least_null`). Counts cluster by
    unit far more than that (a crash-looping device), so the gate takes this on units
    (:mod:`controller.core.stats.on_units`).
    """
    if min(count_t, n_t, count_c, n_c) < 0:
        raise ValueError(f"counts must be >= 0: {count_t}/{n_t}, {count_c}/{n_c}")
    own = _arm_variance(poisson_variance(count_t, n_t), n_t, poisson_variance(count_c, n_c), n_c)
    pooled = poisson_variance(count_t + count_c, n_t + n_c)
    return difference_test(
        delta=(count_t / n_t if n_t else 0.0) - (count_c / n_c if n_c else 0.0),
        variance=_at_least_null(own, pooled, n_t, n_c),
        n=n_t + n_c,
        direction="lower_is_better",
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
    )


def _arm_variance(var_t: float, n_t: int, var_c: float, n_c: int) -> float:
    """v_T/n_T + v_C/n_C; infinite with an empty arm."""
    return math.inf if n_t == 0 or n_c == 0 else var_t / n_t + var_c / n_c


def _at_least_null(own: float, pooled: float, n_t: int, n_c: int) -> float:
    """V, never below its value under the null of identical arms: pooled·(1/n_T + 1/n_C).

    Each arm's own variance shrinks with the very draws that make it look
    harmful: a small treatment arm that happens to miss its rare conversions
    (or its rare large values) shows a low rate *and* a low variance, and the
    test on its own variances rolled back a quarter of identical-arm rollouts
    on conversion rate in ``bench/aa.py``. The pooled estimate, dominated by
    the larger arm, is the variance both arms share when there is no
    difference (the classical score test's); taking the larger of the two
    keeps the plug-in's protection in the other tail (one error among a few
    requests against none in control).
    """
    if math.isinf(own):
        return own
    return max(own, pooled * (1.0 / n_t + 1.0 / n_c))


def _mean_and_variance(total: float, total_sq: float, n: int) -> tuple[float, float]:
    """Mean and sample variance from sums; fewer than two values carry no variance estimate."""
    if n < 2:
        return (total / n if n else 0.0), math.inf
    mean = total / n
    return mean, max(0.0, (total_sq - total * mean) / (n - 1))


def mean_test(  # noqa: PLR0917 - two arms of (sum, sum of squares, n), as stored
    sum_t: float,
    sumsq_t: float,
    n_t: int,
    sum_c: float,
    sumsq_c: float,
    n_c: int,
    *,
    direction: Direction,
    tolerance: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> SequentialResult:
    """Sequential test of a mean (conversion value) from sums and sums of squares.

    An arm with fewer than two values has no variance estimate: the width is
    infinite. V is the larger of the arms' own and the pooled (within-arm)
    sample variance's, as for rates (:func:`_at_least_null`).
    """
    mean_t, var_t = _mean_and_variance(sum_t, sumsq_t, n_t)
    mean_c, var_c = _mean_and_variance(sum_c, sumsq_c, n_c)
    own = _arm_variance(var_t, n_t, var_c, n_c)
    pooled = math.inf
    if n_t >= 2 and n_c >= 2:
        pooled = ((n_t - 1) * var_t + (n_c - 1) * var_c) / (n_t + n_c - 2)
    return difference_test(
        delta=mean_t - mean_c,
        variance=_at_least_null(own, pooled, n_t, n_c),
        n=n_t + n_c,
        direction=direction,
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
    )
