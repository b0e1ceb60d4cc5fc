"""Variance on the unit of assignment: units hashed into buckets, the delta method over them.

Arms are assigned per unit (a user, a ``targetingKey``), so one unit's
requests are not independent draws: a user whose account is broken fails most
of theirs, a user on a slow network is slow on every one, a bot sends
thousands. A metric that is not one per unit (errors per request, latency
quantiles, the share above a latency edge, conversions, crashes or exceptions per exposure,
value per conversion) then varies more than a per-request variance says, by the design
effect, about 1 + (m - 1)·rho for m requests per unit with intra-unit
correlation rho. docs/architecture.md, *Statistics*, gives the method and its
references; this module is its arithmetic, pure and standard library only.

**Buckets of units.** Each event also counts in one of :data:`UNIT_BUCKETS`
buckets of its arm, chosen by :func:`unit_bucket`, a CRC-32 of the unit id: a
hash independent of the assignment's (a murmur3 of flag, salt and unit), so
every bucket of an arm holds a random sample of that arm's units, and one
unit's events all land in one bucket. Bucket totals are then sums over
independent clusters, and the variance of a ratio of sums follows from them
with no per-unit state: the cluster-robust (sandwich) form of the delta method
for a ratio metric R = ΣY / ΣN (Deng, Knoblich and Lu, KDD 2018)::

    Var(R) ≈ G/(G - 1) · Σ_b (Y_b - R·N_b)² / (ΣN)²        (G: buckets with data)

with each residual taken as the jackknife takes it, over 1 - h_b for a bucket holding a
share h_b of the arm (:func:`_spread`): a bucket that one unit fills would otherwise bound
its own effect.

A bucket is counted in the same exactly-once flush as every other field
(``u<b>.<kind>`` fields of the arm's hash, :func:`slot_field`).

**Latency.** A quantile's interval comes from the ranks of Woodruff's method
(:mod:`controller.core.stats.latency`): under clustering the rank spread is
that of the proportion of requests below the quantile, whose variance is a
ratio's, so its design effect widens the ranks (the quantile form of the delta
method). Each bucket keeps its latencies in :data:`LATENCY_BINS` coarse bins of
:data:`FINE_PER_BIN` histogram buckets (a factor of 1.78 in latency), and the
design effect is taken at the coarse edges around the quantile, the larger of
the two. The share above a latency edge takes its design effect the same way.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, itemgetter, mul, sub, truediv

from controller.core.common import BUCKET_COUNT

UNIT_BUCKETS = 64
"""Buckets of units per arm (chosen by the A/A bench: docs/benchmarks.md)."""
FINE_PER_BIN = 5
"""Fine histogram buckets per coarse latency bin of a unit bucket (a quarter decade)."""
LATENCY_BINS = -(-BUCKET_COUNT // FINE_PER_BIN)
"""Coarse latency bins per unit bucket."""
COUNT_KINDS = ("x", "r", "e", "c", "n", "k", "q")
"""A unit bucket's integer counts: exposures, requests, errors, conversions, valued conversions,
crashes, exceptions (new kinds are appended: a field's name says its kind, never its place)."""
SUM_KINDS = ("s",)
"""A unit bucket's float sums: the conversions' values."""
KINDS = (*COUNT_KINDS, *SUM_KINDS, *(f"l{j}" for j in range(LATENCY_BINS)))
"""Every kind a unit bucket counts, in slot order (``l<j>``: latencies in coarse bin j)."""
KIND_COUNT = len(KINDS)
EXPOSURES, REQUESTS, ERRORS, CONVERSIONS, VALUES, CRASHES, EXCEPTIONS, VALUE_SUM = map(
    KINDS.index, ("x", "r", "e", "c", "n", "k", "q", "s")
)
"""Each kind's offset within a bucket's slots."""
LATENCY = len(COUNT_KINDS) + len(SUM_KINDS)
"""The offset of the first coarse latency bin."""
METRIC_DENOMINATORS = {
    "error_rate": REQUESTS,
    "conversion_rate": EXPOSURES,
    "conversion_value": VALUES,
    "crash_count": EXPOSURES,
    "exception_count": EXPOSURES,
}
"""The kind each ratio metric is per (a count guardrail is a count per exposure); latency
metrics are per latency counted."""
COUNTED_KINDS = {"crash_count": CRASHES, "exception_count": EXCEPTIONS}
"""The kind each count guardrail counts: its events have no denominator of their own."""
FIELD_PREFIX = "u"
"""A unit bucket's field is ``u<bucket>.<kind>`` in the arm's hash."""
MIN_CLUSTERS = 8
"""Buckets with data each arm needs before its variance on units is estimated; with fewer
the metric is not yet tested (an arm of a handful of units cannot say how they vary)."""
SLOT_FIELDS: tuple[str, ...] = tuple(
    f"{FIELD_PREFIX}{b}.{kind}" for b in range(UNIT_BUCKETS) for kind in KINDS
)
"""The store's field name of each slot (``bucket * KIND_COUNT + kind``)."""
FLOAT_SLOTS = frozenset(
    b * KIND_COUNT + KINDS.index(kind) for b in range(UNIT_BUCKETS) for kind in SUM_KINDS
)
"""Slots that hold float sums; every other slot counts whole events."""
_FIELD_SLOTS = {name: slot for slot, name in enumerate(SLOT_FIELDS)}
_LATENCY_SPANS = tuple(
    itemgetter(
        *(
            slice(b * KIND_COUNT + LATENCY + first, (b + 1) * KIND_COUNT)
            for b in range(UNIT_BUCKETS)
        )
    )
    for first in range(LATENCY_BINS + 1)
)
"""Per first coarse bin, the slices of each bucket's latencies from that bin up, taken in one
call (a tuple of ``UNIT_BUCKETS`` tuples)."""


def unit_bucket(unit: str) -> int:
    """The unit's bucket, ``0 .. UNIT_BUCKETS - 1``: independent of its arm, stable forever."""
    return zlib.crc32(unit.encode("utf-8", "surrogatepass")) % UNIT_BUCKETS


def slot_of(field: str) -> int | None:
    """The slot a store field counts, or None when it is not a unit bucket's."""
    return _FIELD_SLOTS.get(field)


def slot_field(slot: int) -> str:
    """The store field of ``slot``."""
    return SLOT_FIELDS[slot]


@dataclass(frozen=True, slots=True)
class UnitBuckets:
    """One arm's unit buckets: ``UNIT_BUCKETS * KIND_COUNT`` totals, bucket after bucket."""

    totals: tuple[float, ...]
    _sums: dict[int, tuple[float, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Each bucket's latencies from a coarse bin up, by that bin, made when first asked for
    (a gate asks for the same few more than once)."""

    def __post_init__(self) -> None:
        if len(self.totals) != UNIT_BUCKETS * KIND_COUNT:
            raise ValueError(f"need {UNIT_BUCKETS * KIND_COUNT} bucket totals")

    @classmethod
    def empty(cls) -> UnitBuckets:
        return cls((0.0,) * (UNIT_BUCKETS * KIND_COUNT))

    def column(self, kind: int) -> list[float]:
        """Each bucket's total of one kind."""
        return list(self.totals[kind::KIND_COUNT])

    def total(self, kind: int) -> float:
        return math.fsum(self.totals[kind::KIND_COUNT])

    def latency_at_or_above(self, first_bin: int) -> list[float]:
        """Each bucket's latencies in coarse bins ``first_bin`` and up."""
        return list(self.latency_from(first_bin))

    def latency_from(self, first_bin: int) -> tuple[float, ...]:
        """:meth:`latency_at_or_above` as kept (a tuple: no copy needed)."""
        first = min(max(first_bin, 0), LATENCY_BINS)
        found = self._sums.get(first)
        if found is None:
            found = self._sums[first] = self._from(first)
        return found

    def _from(self, first: int) -> tuple[float, ...]:
        """Each bucket's latencies from coarse bin ``first`` up, worked out from those of a
        neighbouring bin where they are known (one column added or taken off), else a slice
        and a sum per bucket, all in C. Counts are whole numbers, so every sum and
        difference is exact, as math.fsum's would be, whichever way it is taken."""
        totals, known = self.totals, self._sums
        above = known.get(first + 1)
        if above is not None:
            return tuple(map(add, above, totals[LATENCY + first :: KIND_COUNT]))
        below = known.get(first - 1)
        if below is not None:
            return tuple(map(sub, below, totals[LATENCY + first - 1 :: KIND_COUNT]))
        return tuple(map(sum, _LATENCY_SPANS[first](totals), repeat(0.0)))

    def latency_counts(self) -> list[float]:
        return self.latency_at_or_above(0)

    def occupied(self, metric: str) -> int:
        """Buckets holding any event of ``metric`` (its denominator)."""
        kind = METRIC_DENOMINATORS.get(metric)
        counts = self.latency_counts() if kind is None else self.column(kind)
        return occupied(counts)

    def plus(self, other: UnitBuckets) -> UnitBuckets:
        return UnitBuckets(tuple(a + b for a, b in zip(self.totals, other.totals, strict=True)))


def occupied(counts: Sequence[float]) -> int:
    """Buckets with any of the denominator: the clusters a variance is estimated from
    (counts are never negative: those not zero, counted in C)."""
    counted = counts if isinstance(counts, (list, tuple)) else list(counts)
    return len(counted) - counted.count(0)


def leverage_weights(denominators: Sequence[float], total: float, clusters: int) -> list[float]:
    """Each bucket's weight in the spread, ((1 - 1/G) / (1 - h_b))², h_b = N_b / ΣN the
    bucket's leverage and G the buckets holding data: what makes the variance the jackknife's
    (CV3 of MacKinnon, Nielsen and Webb 2023, after Bell and McCaffrey 2002) once the caller's
    G/(G - 1) is applied. A bucket's own residual shrinks by (1 - h_b) as its share of the arm
    grows, so one unit carrying most of an arm would otherwise bound its own effect (the plain
    sandwich's bias with one dominant cluster, MacKinnon and Webb 2017). Buckets of equal size
    weigh 1: only an unequal bucket is widened. With one bucket or none holding data every
    weight is 1; with two or more, every ΣN - N_b is positive (counts are never negative)."""
    if clusters <= 1 or total <= 0:
        return [1.0] * len(denominators)
    scale = (1.0 - 1.0 / clusters) * total
    factors = list(map(truediv, repeat(scale), map(sub, repeat(total), denominators)))
    return list(map(mul, factors, factors))


def _spread(
    numerators: Sequence[float],
    denominators: Sequence[float],
    rate: float,
    weights: Sequence[float],
) -> float:
    """Σ_b (Y_b - rate·N_b)² · w_b over buckets (``weights``: :func:`leverage_weights`), every
    step in C (map over the columns), summed exactly (math.fsum)."""
    residuals = list(map(sub, numerators, map(mul, repeat(rate), denominators)))
    return math.fsum(map(mul, map(mul, residuals, residuals), weights))


def ratio_variance(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Var(ΣY/ΣN) over independent buckets, the delta method's sandwich (see the module).

    Infinite with fewer than :data:`MIN_CLUSTERS` buckets holding any of the denominator.
    """
    clusters = occupied(denominators)
    total = math.fsum(denominators)
    if clusters < MIN_CLUSTERS or total <= 0:
        return math.inf
    if len(numerators) != len(denominators):
        raise ValueError("numerators and denominators of different buckets")
    weights = leverage_weights(denominators, total, clusters)
    spread = _spread(numerators, denominators, math.fsum(numerators) / total, weights)
    return clusters / (clusters - 1) * spread / (total * total)


@dataclass(frozen=True, slots=True)
class BucketRatio:
    """One arm's ratio ΣY/ΣN over its buckets: what its own variance and the pooled one both
    need, worked out once (:func:`bucket_ratio`)."""

    clusters: int
    """Buckets holding any of the denominator."""
    total: float
    """ΣN, summed exactly."""
    spread: float
    """Σ_b (Y_b - R·N_b)² at the arm's own rate R = ΣY/ΣN; infinite where ΣN ≤ 0."""

    @property
    def variance(self) -> float:
        """:func:`ratio_variance` of the same buckets."""
        clusters, total = self.clusters, self.total
        if clusters < MIN_CLUSTERS or total <= 0:
            return math.inf
        return clusters / (clusters - 1) * self.spread / (total * total)


def bucket_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> BucketRatio:
    """One arm's :class:`BucketRatio` (its spread taken wherever ΣN > 0)."""
    clusters, total = occupied(denominators), math.fsum(denominators)
    if total <= 0:
        return BucketRatio(clusters, total, math.inf)
    if len(numerators) != len(denominators):
        raise ValueError("numerators and denominators of different buckets")
    weights = leverage_weights(denominators, total, clusters)
    spread = _spread(numerators, denominators, math.fsum(numerators) / total, weights)
    return BucketRatio(clusters, total, spread)


def pooled_ratio_variance(
    arms: Sequence[tuple[Sequence[float], Sequence[float], int]],
) -> float:
    """Var(R_T - R_C) as identical arms would have it, from both arms' buckets and units.

    ``arms``: per arm its bucket numerators, denominators and units. The per-unit variance
    of the linearised metric Y - R·N (each arm at its own rate, so a real difference between
    the arms does not count as noise) is pooled over both arms' buckets; identical arms share
    it, so each arm's share is that variance over its own units: σ²·(1/n_T + 1/n_C) / μ², μ
    the denominator per unit. Dominated by the larger arm, it keeps a small arm that happens
    to miss its rare events from claiming certainty (the unit form of the pooled floor of
    :mod:`controller.core.stats.sequential`). Infinite without enough data.
    """
    ratios: list[tuple[BucketRatio, int]] = []
    for ys, ns, n in arms:
        ratio = bucket_ratio(ys, ns)
        if ratio.total <= 0:
            return math.inf
        ratios.append((ratio, n))
    return pooled_variance(ratios)


def pooled_variance(arms: Sequence[tuple[BucketRatio, int]]) -> float:
    """:func:`pooled_ratio_variance` from each arm's :class:`BucketRatio` and units."""
    units = [n for _, n in arms]
    spread, clusters, total = 0.0, 0, 0.0
    for ratio, _ in arms:
        if ratio.total <= 0:
            return math.inf
        spread += ratio.spread
        clusters += ratio.clusters
        total += ratio.total
    all_units = sum(units)
    if min(units) <= 0 or clusters < 2 * MIN_CLUSTERS:
        return math.inf
    per_unit = clusters / (clusters - 2) * spread / all_units
    per_unit_denominator = total / all_units
    return per_unit / per_unit_denominator**2 * sum(1.0 / n for n in units)


def design_effect(variance: float, independent: float) -> float | None:
    """The variance on units over the variance as if requests were independent; None when
    either is unknown (infinite) or the independent one is zero."""
    if not (math.isfinite(variance) and math.isfinite(independent)) or independent <= 0:
        return None
    return variance / independent


def share_design_effect(below: Sequence[float], counts: Sequence[float]) -> float | None:
    """The design effect of the share ΣB/ΣN over buckets: the unit variance over p(1-p)/ΣN.

    None when the share is 0 or 1 (no variance either way) or too few buckets hold data.
    """
    spread = share_spread(below, bucket_counts(counts))
    return None if spread is None else spread.design_effect


@dataclass(frozen=True, slots=True)
class BucketCounts:
    """The buckets' counts of a share's denominator, with their exact sum and the buckets
    holding any: what the share's design effect divides by at every edge (:func:`bucket_counts`)."""

    counts: Sequence[float]
    total: float
    clusters: int
    weights: Sequence[float]
    """Each bucket's :func:`leverage_weights`: the same at every edge, worked out once."""


def bucket_counts(counts: Sequence[float]) -> BucketCounts:
    counted = counts if isinstance(counts, (list, tuple)) else list(counts)
    total, clusters = math.fsum(counted), occupied(counted)
    return BucketCounts(counted, total, clusters, leverage_weights(counted, total, clusters))


@dataclass(frozen=True, slots=True)
class ShareSpread:
    """One arm's share ΣB/ΣN over its buckets, around its own value: what its own design
    effect and the pooled within-arm one both need (:func:`share_spread`)."""

    share: float
    total: float
    clusters: int
    spread: float
    """Σ_b (B_b - share·N_b)², the residuals around the arm's own share."""

    @property
    def binomial(self) -> float:
        """ΣN·p(1 - p): the spread the same events would have were they independent."""
        return self.total * self.share * (1.0 - self.share)

    @property
    def design_effect(self) -> float | None:
        """The arm's own design effect; None when its share is 0 or 1, or too few buckets
        hold data."""
        if self.clusters < MIN_CLUSTERS or self.binomial <= 0:
            return None
        return self.clusters / (self.clusters - 1) * self.spread / self.binomial


def share_spread(below: Sequence[float], counted: BucketCounts) -> ShareSpread | None:
    """The arm's :class:`ShareSpread`; None when it has no events."""
    total = counted.total
    if total <= 0:
        return None
    if len(below) != len(counted.counts):
        raise ValueError("numerators and denominators of different buckets")
    share = math.fsum(below) / total
    spread = _spread(below, counted.counts, share, counted.weights)
    return ShareSpread(share, total, counted.clusters, spread)


def within_arms_design_effect(arms: Sequence[ShareSpread]) -> float | None:
    """The design effect of a share pooled within arms: each arm's residuals around its own
    share, summed over both arms' buckets, over the binomial spread of both. A difference
    between the arms is the effect, never clustering: only each arm's spread around its own
    value counts (the within-groups variance of an analysis of variance). None with fewer
    than :data:`MIN_CLUSTERS` buckets holding data per arm, or no variance at all."""
    clusters = sum(arm.clusters for arm in arms)
    binomial = math.fsum(arm.binomial for arm in arms)
    if min(arm.clusters for arm in arms) < MIN_CLUSTERS or binomial <= 0:
        return None
    spread = math.fsum(arm.spread for arm in arms)
    return clusters / (clusters - len(arms)) * spread / binomial
