"""Latency tests from histograms: quantiles and the share above an edge.

Pure functions of bucket counts; no I/O and nothing beyond the standard library.

**Latency quantiles** come from the fixed log-scale histogram
(:mod:`controller.core.common.histogram`) at the continuous rank n·q: geometric
interpolation inside a bucket, linear in the underflow bucket [0, 0.1 ms),
the low edge in the overflow bucket.

A quantile's standard error is Woodruff's (1952, *Confidence intervals for
medians and other position measures*): the distribution-free confidence
interval of the quantile from order statistics (the binomial method, as in
Conover, *Practical Nonparametric Statistics*, §3.2), with the normal
approximation of its ranks, n·q ± z·√(n·q(1 - q)) at z = 1.96, mapped through
the quantile function, and SE ≈ (Q_high - Q_low) / 2z. When either rank
falls outside the sample (below 0 or above n) the interval is unbounded: the
sample cannot say where its quantile lies, so the SE is infinite and the test
gives no bound. That needs n ≥ z²·max(q/(1 - q), (1 - q)/q) requests
(:func:`quantile_min_samples`): 73 for p95, 381 for p99. Mass in the overflow
bucket has no width, so it understates the error there.
Both tests use the sequential boundary of :mod:`controller.core.stats.sequential`.

**Each arm's own latency** (:func:`latency_evidence`) is what the gate
publishes beside the Δ of its latency guardrails: p50/p95/p99 of each arm's
histogram by the same interpolation, so people can see which arm moved.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from controller.core.common import BUCKET_COUNT, EDGES_MS
from controller.core.stats.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_N_TUNE,
    SequentialResult,
    difference_test,
    proportion_test,
)
from controller.core.wire import JsonObject

ARM_QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
"""The quantiles of each arm's latency the gate publishes, by name."""
ARM_QUANTILE_DECIMALS = 3
"""Places in ms kept of each published quantile (a µs): exact enough, and small."""
QUANTILE_Z = 1.96
"""z of the order-statistic interval behind a quantile's standard error."""
_EDGE_SLACK = 1e-9
"""Relative slack so that an exceedance edge equal to a bucket edge, up to
floating-point rounding, selects that bucket."""


def _histogram_total(hist: Sequence[int]) -> int:
    if len(hist) != BUCKET_COUNT or min(hist) < 0:
        raise ValueError(f"need {BUCKET_COUNT} non-negative bucket counts")
    return sum(hist)


def _within_bucket(index: int, fraction: float) -> float:
    """The latency a share ``fraction`` of the way through bucket ``index`` (0..117)."""
    # bucket_bounds without its range check: a bisect of the running totals is in range.
    low = 0.0 if index == 0 else EDGES_MS[index - 1]
    high = EDGES_MS[index] if index < len(EDGES_MS) else math.inf
    if index == 0:
        return low + fraction * (high - low)
    if math.isinf(high):
        return low
    return low * math.pow(high / low, fraction)


@dataclass(slots=True)
class _Ranked:
    """A histogram, checked as :func:`_histogram_total` does, with its running totals and
    total, and the latencies at the ranks looked up in it so far."""

    hist: Sequence[int]
    cumulative: list[int]
    total: int
    values: dict[float, float] = field(default_factory=dict)

    def at(self, rank: float) -> float:
        """:func:`_value_at_rank`, each rank worked out once (a quantile's rank is asked for
        by the test as if independent, the test on units and the evidence alike)."""
        found = self.values.get(rank)
        if found is None:
            found = _value_at_rank(self.hist, self.cumulative, rank)
            if len(self.values) < _RANKS_KEPT:
                self.values[rank] = found
        return found


_RANKED: dict[int, _Ranked] = {}
"""The histograms last asked for, by the id of the tuple each is (kept with it, so that the
id is not reused while it is here): a gate looks up both arms' several times (each latency
guardrail's tests, the evidence), and a tuple cannot change."""
_RANKED_KEPT = 32
_RANKS_KEPT = 32


def _ranked(hist: Sequence[int]) -> _Ranked:
    """The histogram ranked: worked out once per histogram, however many ranks are then
    looked up in it."""
    if type(hist) is tuple:
        kept = _RANKED.get(id(hist))
        if kept is not None and kept.hist is hist:
            return kept
    total = _histogram_total(hist)
    ranked = _Ranked(hist, list(accumulate(hist)), total)
    if type(hist) is tuple:
        if len(_RANKED) >= _RANKED_KEPT:
            _RANKED.clear()
        _RANKED[id(hist)] = ranked
    return ranked


def _value_at_rank(hist: Sequence[int], cumulative: list[int], rank: float) -> float:
    """The latency below which ``rank`` of the counts lie (``hist`` must not be empty);
    ``cumulative``: its running totals."""
    # The first bucket whose cumulative count reaches the rank (a rank of 0: the
    # first bucket with any count); bisecting keeps the gate loop cheap.
    index = bisect_left(cumulative, rank) if rank > 0 else bisect_right(cumulative, 0)
    if index >= len(cumulative):
        return _within_bucket(bisect_left(cumulative, cumulative[-1]), 1.0)
    seen = cumulative[index] - hist[index]
    return _within_bucket(index, min(1.0, max(0.0, (rank - seen) / hist[index])))


def _check_q(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")


def histogram_quantile(hist: Sequence[int], q: float) -> float | None:
    """The q-quantile of a latency histogram in ms, or ``None`` when it is empty."""
    _check_q(q)
    ranked = _ranked(hist)
    return ranked.at(q * ranked.total) if ranked.total else None


def quantile_min_samples(q: float, z: float = QUANTILE_Z) -> int:
    """The fewest samples whose order-statistic interval of the q-quantile lies inside them.

    Both ranks n·q ± z·√(n·q(1 - q)) stay within [0, n] iff
    n ≥ z²·q/(1 - q) and n ≥ z²·(1 - q)/q: 73 for p95 and 381 for p99 at z = 1.96.
    """
    if not 0.0 < q < 1.0 or not z > 0.0:
        raise ValueError(f"need 0 < q < 1 and z > 0, got {q} and {z}")
    bound = z * z * max(q / (1.0 - q), (1.0 - q) / q)
    return math.ceil(bound * (1.0 - 1e-12))  # 72.99... is 73, but 73.0 must not become 74


def quantile_interval(hist: Sequence[int], q: float) -> tuple[float, float] | None:
    """The order-statistic interval of the q-quantile in ms (see the module docstring).

    None when it reaches outside the sample (an empty histogram included):
    the data then bound the quantile on one side only.
    """
    _check_q(q)
    return _interval(_ranked(hist), q)


def _interval(ranked: _Ranked, q: float, deff: float = 1.0) -> tuple[float, float] | None:
    # Under clustering the rank's variance is the design effect times the binomial's.
    total = ranked.total
    spread = QUANTILE_Z * math.sqrt(total * q * (1.0 - q) * deff)
    low_rank, high_rank = total * q - spread, total * q + spread
    if total == 0 or low_rank < 0.0 or high_rank > total:
        return None
    return ranked.at(low_rank), ranked.at(high_rank)


def quantile_standard_error(hist: Sequence[int], q: float) -> float:
    """Standard error of the q-quantile from its order-statistic interval, Woodruff's way.

    Infinite when the interval reaches outside the sample: too few requests
    to say anything about this quantile (fewer than :func:`quantile_min_samples`).
    """
    _check_q(q)
    return _standard_error(_ranked(hist), q)


def _standard_error(ranked: _Ranked, q: float, deff: float = 1.0) -> float:
    interval = _interval(ranked, q, deff)
    if interval is None:
        return math.inf
    low, high = interval
    return (high - low) / (2.0 * QUANTILE_Z)


def latency_quantile_test(
    hist_t: Sequence[int],
    hist_c: Sequence[int],
    q: float,
    *,
    relative_tolerance: float = 0.10,
    alpha: float = DEFAULT_ALPHA,
    n_tune: int = DEFAULT_N_TUNE,
    design_effects: tuple[float, float] = (1.0, 1.0),
    n: int | None = None,
) -> SequentialResult:
    """Sequential test of Q_T - Q_C, V = SE_T² + SE_C², tolerating ``relative_tolerance·Q_C``.

    An arm too small to bound its quantile has an infinite SE: no bound, never a regression.
    ``design_effects`` (treatment, control) widen each arm's ranks, and ``n`` is what the
    boundary counts (the units), for a test on units (:mod:`controller.core.stats.units`);
    left out, requests are taken as independent.
    """
    _check_q(q)
    ranked_t, ranked_c = _ranked(hist_t), _ranked(hist_c)
    total_t, total_c = ranked_t.total, ranked_c.total
    delta, variance, tolerance = 0.0, math.inf, 0.0  # an empty arm: no bound at all
    if total_t and total_c:
        q_t = ranked_t.at(q * total_t)
        q_c = ranked_c.at(q * total_c)
        delta, tolerance = q_t - q_c, relative_tolerance * q_c
        se_t = _standard_error(ranked_t, q, design_effects[0])
        se_c = _standard_error(ranked_c, q, design_effects[1])
        variance = se_t**2 + se_c**2
    return difference_test(
        delta=delta,
        variance=variance,
        n=total_t + total_c if n is None else n,
        direction="lower_is_better",
        tolerance=tolerance,
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


def arm_latency(hist: Sequence[int]) -> JsonObject:
    """One arm's latency quantiles in ms and its count; the quantiles None without events."""
    ranked = _ranked(hist)
    total = ranked.total
    shown: JsonObject = {}
    for name, q in ARM_QUANTILES:
        value = ranked.at(q * total) if total else None
        shown[name] = None if value is None else round(value, ARM_QUANTILE_DECIMALS)
    shown["count"] = total
    return shown


def latency_evidence(treatment: Sequence[int], control: Sequence[int]) -> JsonObject:
    """Per arm :func:`arm_latency` of its histogram: the evidence's ``latency``, a few numbers."""
    return {"treatment": arm_latency(treatment), "control": arm_latency(control)}
