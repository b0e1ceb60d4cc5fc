"""Statistics for the gates: sequential tests, latency quantiles and SRM.

Pure functions of counts; no I/O and nothing beyond the standard library.
Below, ``a`` is the level alpha and ``r`` the mixture parameter rho.

**Sequential test** (one-sided, valid under continuous peeking): the
asymptotic confidence sequence of Waudby-Smith, Arnold, Wu, McAuliffe and
Ramdas, *Time-uniform central limit theory and asymptotic confidence
sequences* (arXiv:2103.06476), in the one-sided form of GrowthBook's gbstats
(``SequentialOneSidedTreatmentLesserTTest`` and its mirror)::

    Δ = m_T - m_C        V = v_T/n_T + v_C/n_C        N = n_T + n_C
    r = √((-2 ln(2a) + ln(1 - 2 ln(2a))) / N_tune)
    h = √(N·V · 2(N·r² + 1)/(N·r)² · ln(1 + √(N·r² + 1)/(2a)))

DESIGN §8 writes ``ln 2a``; it means ``ln(2a)``, as in gbstats, where the
one-sided test tunes r for level 2a. Only that reading reproduces the design's
example: 650 vs 500 errors in 100,000 requests per arm give h = 1.07965e-3
and a lower bound of 4.2035e-4. r makes the boundary tightest near
N = N_tune. A lower-is-better metric regresses iff Δ - h > δ, a
higher-is-better one iff Δ + h < -δ, with δ ≥ 0 an absolute tolerance. With
no data in an arm the width is infinite; with V = 0 it is zero; neither ever
regresses.

**Always-valid p-value**: the smallest level a' at which the boundary, with r
kept at the configured level as gbstats does, leaves the tolerance; so
p < a exactly when the test regresses. Solving h(a') = m, where m is how far
Δ lies beyond δ on the harmful side, gives it in closed form::

    L = m²·(N·r)² / (N·V · 2(N·r² + 1))        p = min(1, √(N·r² + 1) / (2·(e^L - 1)))

**Proportions** use v = p(1 - p); an arm with no events, or only events, gets
the variance of half an event, f(1 - f) with f = 0.5/n, so that a handful of
requests cannot claim certainty. **Means** use the sample variance from sums.

**Latency quantiles** come from the fixed log-scale histogram
(:mod:`controller.core.histogram`) at the continuous rank n·q: geometric
interpolation inside a bucket, linear in the underflow bucket [0, 0.1 ms),
the low edge in the overflow bucket. A quantile's standard error comes from
its order-statistic interval: the ranks n·q ± z·√(n·q(1 - q)), z = 1.96,
mapped through the quantile function, SE ≈ (Q_high - Q_low) / 2z. Mass in
the overflow bucket has no width, so it understates the error there.

**SRM**: chi-square goodness of fit of units per arm against the stage's
split, one degree of freedom, p = erfc(√(χ²/2)) (exact for df = 1).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from controller.core.histogram import BUCKET_COUNT, EDGES_MS, bucket_bounds

Direction = Literal["lower_is_better", "higher_is_better"]
EvidenceValue = float | int | str | bool

DEFAULT_ALPHA = 0.05
DEFAULT_N_TUNE = 5000
DEFAULT_DATA_FLOOR = 150
QUANTILE_Z = 1.96
"""z of the order-statistic interval behind a quantile's standard error."""
_EDGE_SLACK = 1e-9
"""Relative slack so that an exceedance edge equal to a bucket edge, up to
floating-point rounding, selects that bucket."""
_MAX_EXPONENT = 700.0
_DIRECTIONS: tuple[Direction, ...] = ("lower_is_better", "higher_is_better")


def _json_ready(value: EvidenceValue) -> EvidenceValue:
    # JSON has no infinities; "inf" / "-inf" keep the meaning readable.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


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

    def evidence(self) -> dict[str, EvidenceValue]:
        """Every field, JSON-ready (infinities as the strings ``inf`` / ``-inf``)."""
        return {name: _json_ready(value) for name, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class SrmResult:
    """The outcome of a sample-ratio-mismatch check on units per arm."""

    observed_treatment: int
    observed_control: int
    expected_treatment_share: float
    expected_control_share: float
    expected_treatment: float
    expected_control: float
    chi2: float
    p_value: float
    """The chi-square p-value of this one look (for reference; it ignores peeking)."""
    bayes_factor: float
    """Evidence for a mismatch against the split: a test martingale under it."""
    sequential_p_value: float
    """min(1, 1 / bayes_factor): valid however often the check is repeated."""
    p_threshold: float
    flagged: bool

    def evidence(self) -> dict[str, EvidenceValue]:
        """Every field, JSON-ready."""
        return {name: _json_ready(value) for name, value in asdict(self).items()}


def enough_data(events_larger_arm: int, floor: int = DEFAULT_DATA_FLOOR) -> bool:
    """Whether the larger arm has seen enough events of a metric for it to be tested."""
    return events_larger_arm >= floor


# --- the sequential boundary --------------------------------------------------------------


def sequential_rho(alpha: float, n_tune: float) -> float:
    """rho of the one-sided boundary at level alpha, tightest near ``n_tune`` units in all."""
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


def always_valid_p_value(
    *,
    delta: float,
    variance: float,
    n: int,
    direction: Direction,
    tolerance: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> float:
    """The smallest level at which the boundary (rho tuned for ``alpha``) leaves the tolerance."""
    _check_settings(direction, tolerance)
    rho = sequential_rho(alpha, n_tune)
    return _p_value(_margin(delta, tolerance, direction), variance, n, rho)


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


def _bernoulli_variance(successes: int, n: int) -> float:
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
    """Sequential test of a rate (errors per request, conversions per unit): v = p(1-p)."""
    _check_count(successes_t, n_t)
    _check_count(successes_c, n_c)
    return sequential_test(
        mean_t=successes_t / n_t if n_t else 0.0,
        var_t=_bernoulli_variance(successes_t, n_t),
        n_t=n_t,
        mean_c=successes_c / n_c if n_c else 0.0,
        var_c=_bernoulli_variance(successes_c, n_c),
        n_c=n_c,
        direction=direction,
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
    )


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

    An arm with fewer than two values has no variance estimate: the width is infinite.
    """
    mean_t, var_t = _mean_and_variance(sum_t, sumsq_t, n_t)
    mean_c, var_c = _mean_and_variance(sum_c, sumsq_c, n_c)
    return sequential_test(
        mean_t=mean_t,
        var_t=var_t,
        n_t=n_t,
        mean_c=mean_c,
        var_c=var_c,
        n_c=n_c,
        direction=direction,
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
    )


# --- latency from histograms --------------------------------------------------------------


def _histogram_total(hist: Sequence[int]) -> int:
    if len(hist) != BUCKET_COUNT or any(count < 0 for count in hist):
        raise ValueError(f"need {BUCKET_COUNT} non-negative bucket counts")
    return sum(hist)


def _within_bucket(index: int, fraction: float) -> float:
    """The latency a share ``fraction`` of the way through bucket ``index``."""
    low, high = bucket_bounds(index)
    if index == 0:
        return low + fraction * (high - low)
    if math.isinf(high):
        return low
    return low * math.pow(high / low, fraction)


def _value_at_rank(hist: Sequence[int], rank: float) -> float:
    """The latency below which ``rank`` of the counts lie (``hist`` must not be empty)."""
    seen, last = 0, 0
    for index, count in enumerate(hist):
        if count and seen + count >= rank:
            return _within_bucket(index, min(1.0, max(0.0, (rank - seen) / count)))
        seen += count
        last = index if count else last
    return _within_bucket(last, 1.0)


def histogram_quantile(hist: Sequence[int], q: float) -> float | None:
    """The q-quantile of a latency histogram in ms, or ``None`` when it is empty."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    total = _histogram_total(hist)
    return _value_at_rank(hist, q * total) if total else None


def quantile_standard_error(hist: Sequence[int], q: float) -> float:
    """Standard error of the q-quantile, from its order-statistic interval (inf when empty)."""
    if histogram_quantile(hist, q) is None:
        return math.inf
    total = sum(hist)
    spread = QUANTILE_Z * math.sqrt(total * q * (1.0 - q))
    low = _value_at_rank(hist, max(0.0, total * q - spread))
    high = _value_at_rank(hist, min(float(total), total * q + spread))
    return (high - low) / (2.0 * QUANTILE_Z)


def latency_quantile_test(
    hist_t: Sequence[int],
    hist_c: Sequence[int],
    q: float,
    *,
    relative_tolerance: float = 0.10,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> SequentialResult:
    """Sequential test of Q_T - Q_C, V = SE_T² + SE_C², tolerating ``relative_tolerance·Q_C``."""
    q_t, q_c = histogram_quantile(hist_t, q), histogram_quantile(hist_c, q)
    n = sum(hist_t) + sum(hist_c)
    if q_t is None or q_c is None:
        return difference_test(
            delta=0.0,
            variance=math.inf,
            n=n,
            direction="lower_is_better",
            alpha=alpha,
            n_tune=n_tune,
        )
    variance = quantile_standard_error(hist_t, q) ** 2 + quantile_standard_error(hist_c, q) ** 2
    return difference_test(
        delta=q_t - q_c,
        variance=variance,
        n=n,
        direction="lower_is_better",
        tolerance=relative_tolerance * q_c,
        alpha=alpha,
        n_tune=n_tune,
    )


def exceedance_bucket(edge_ms: float) -> int:
    """The first bucket whose low edge is at or above ``edge_ms``.

    A bucket that straddles the edge is left out, so the edge is in effect
    rounded up to the next bucket edge (at most about 12% higher).
    """
    if edge_ms <= 0.0:
        return 0
    return bisect_left(EDGES_MS, edge_ms * (1.0 - _EDGE_SLACK)) + 1


def exceedance_test(
    hist_t: Sequence[int],
    hist_c: Sequence[int],
    edge_ms: float,
    *,
    tolerance: float = 0.0,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
) -> SequentialResult:
    """Sequential test of the share of requests at or above ``edge_ms`` (lower is better).

    Requests are counted from :func:`exceedance_bucket` up, so an edge inside a
    bucket is rounded up to that bucket's high edge.
    """
    first = exceedance_bucket(edge_ms)
    total_t, total_c = _histogram_total(hist_t), _histogram_total(hist_c)
    return proportion_test(
        sum(hist_t[first:]),
        total_t,
        sum(hist_c[first:]),
        total_c,
        direction="lower_is_better",
        tolerance=tolerance,
        alpha=alpha,
        n_tune=n_tune,
    )


# --- sample ratio mismatch ----------------------------------------------------------------


def _chi_square(observed: Sequence[int], expected: Sequence[float]) -> float:
    # A 0% or 100% split has one arm by design: there is no ratio to check.
    if any(e <= 0.0 for e in expected):
        return 0.0
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))


def srm_test(
    units_t: int,
    units_c: int,
    expected_treatment_share: float,
    *,
    p_threshold: float = 0.001,
    min_units_per_arm: int = 8,
) -> SrmResult:
    """Sample-ratio mismatch of units per arm against the split, valid under peeking.

    The gate repeats this check on every evaluation, so a fixed-sample test
    would flag healthy stages by chance: at p < 0.001, a chi-square checked
    every 10 units flags about 2% of healthy stages. The decision is instead
    taken on an anytime-valid p-value, ``1 / BF``, where ``BF`` is the Bayes
    factor of a Beta-binomial mixture against the expected split (the
    Dirichlet-multinomial test of Lindon and Malek, 2022, for two arms),
    averaged over three prior concentrations so that both gross mismatches
    in small samples and slight ones in large samples are caught. By Ville's
    inequality it exceeds ``1 / p_threshold`` at any look with probability at
    most ``p_threshold`` when the split is right. The chi-square statistic
    and its one-look p-value are kept in the evidence for reference.
    """
    if not 0.0 <= expected_treatment_share <= 1.0 or units_t < 0 or units_c < 0:
        raise ValueError("need a share in [0, 1] and non-negative unit counts")
    total = units_t + units_c
    share_c = 1.0 - expected_treatment_share
    expected = (total * expected_treatment_share, total * share_c)
    chi2 = _chi_square((units_t, units_c), expected)
    bayes_factor = srm_bayes_factor(units_t, units_c, expected_treatment_share)
    sequential_p = min(1.0, 1.0 / bayes_factor) if bayes_factor > 0 else 1.0
    return SrmResult(
        observed_treatment=units_t,
        observed_control=units_c,
        expected_treatment_share=expected_treatment_share,
        expected_control_share=share_c,
        expected_treatment=expected[0],
        expected_control=expected[1],
        chi2=chi2,
        p_value=math.erfc(math.sqrt(chi2 / 2.0)),
        bayes_factor=bayes_factor,
        sequential_p_value=sequential_p,
        p_threshold=p_threshold,
        flagged=sequential_p < p_threshold and min(units_t, units_c) >= min_units_per_arm,
    )


SRM_PRIOR_CONCENTRATIONS = (100.0, 1_000.0, 10_000.0)
"""Beta prior concentrations of the mixture: 100 reacts to gross mismatches within a few
hundred units, 10,000 to a fraction of a percentage point within about 100,000."""


def srm_bayes_factor(units_t: int, units_c: int, share: float) -> float:
    """Mixture likelihood of the counts over a Beta prior centred on ``share``, over theirs.

    1.0 (no evidence) for a one-sided split, where there is nothing to test.
    Infinite when the evidence overflows a float.
    """
    if not 0.0 < share < 1.0:
        return 1.0
    null = units_t * math.log(share) + units_c * math.log1p(-share)
    factors = []
    for concentration in SRM_PRIOR_CONCENTRATIONS:
        a, b = concentration * share, concentration * (1.0 - share)
        log_mixture = _log_beta(a + units_t, b + units_c) - _log_beta(a, b)
        factors.append(math.exp(min(log_mixture - null, _MAX_EXPONENT)))
    return sum(factors) / len(factors)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
