"""What a small arm may hold: its power averaged over which units land in it.

A stage's smaller arm of k units holds a Poisson number of the units that are unlike the
rest, k times their share: heavy units (:attr:`~.regressing.Traffic.heavy_share`), whose
requests decide how many the arm gets, and failing units
(:attr:`~.regressing.Traffic.failing_share`), whose count in the treatment decides its rate
and its spread. Where that number is small the gate's power differs from its power at the
expected content, and :mod:`controller.core.stats.power` averages it over the contents
listed here instead (docs/architecture.md, *What a stage can catch*). Pure; standard
library only.
"""

from __future__ import annotations

import math
from dataclasses import replace

from controller.core.stats.regressing import Arms, Failing, Traffic
from controller.core.stats.units import UNIT_BUCKETS

MIXED_UNITS = 400.0
"""Unlike units expected in the smaller arm up to which its content is mixed over their
count; past it their count varies by under 5% and the expected content is taken."""
_NEGLIGIBLE = 1e-9
"""A content less likely than this is left out."""


def arm_contents(
    percent: float, traffic: Traffic, arms: Arms, failing: Failing | None = None
) -> list[tuple[float, Arms]]:
    """The arms' possible contents with their chances (summing to 1): the smaller arm's
    count of heavy units, and the treatment's count of ``failing`` units where it is the
    smaller arm; the larger arm as expected. One content, the expected arms, where neither
    varies.

    Failing units are counted among the arm's effective units (Kish): k·E[m]²/E[m²] =
    k·m/(1 + weight), for the spread they carry grows with the square of their requests, and
    an arm of k units spreads as that many of equal size."""
    small = 0 if percent <= 50.0 else 1
    units = arms.units[small]
    contents = [(1.0, arms)]
    heavy = _poisson(units * traffic.heavy_share)
    if heavy:
        light, each = traffic.light_requests(), traffic.heavy_requests
        other = arms.units[1 - small] * traffic.heavy_share
        contents = [
            (
                chance,
                _with_heavy(
                    arms,
                    small,
                    (float(j), other) if small == 0 else (other, float(j)),
                    max(0.0, units - j) * light + j * each,
                ),
            )
            for chance, j in heavy
        ]
    if failing is None or small != 0:
        return contents
    effective = min(units, units * traffic.requests_per_unit / (1.0 + failing.weight))
    counts = _poisson(effective * failing.share)
    if counts:
        contents = [
            (chance * also, replace(content, failing=min(1.0, j / effective)))
            for chance, content in contents
            for also, j in counts
        ]
    return [(c, content) for c, content in contents if c > _NEGLIGIBLE]


def _with_heavy(arms: Arms, arm: int, heavy: tuple[float, float], requests: float) -> Arms:
    """The arms with ``heavy`` heavy units in each, ``arm`` then getting ``requests``."""
    both = list(arms.requests)
    both[arm] = requests
    return replace(arms, requests=(both[0], both[1]), heavy=heavy)


def estimate_degrees(traffic: Traffic, arms: Arms, deff: float) -> float:
    """How many degrees of freedom the gate's variance on units has in these arms
    (Satterthwaite, *An approximate distribution of estimates of variance components*,
    Biometrics Bulletin 1946): the gate sums each of :data:`UNIT_BUCKETS` buckets' squared
    residual, each about its mean times a χ² of one degree, so it has (Σ s_b)² / Σ s_b² of the
    buckets' means s_b, both arms' weighed by their share of V. A few heavy units, each in a
    bucket of its own, carry most of an arm's spread and leave it few degrees: its estimate
    of the design effect then scatters, and the gate takes it at least 1.

    A unit of m requests carries m·(1 + (d - 1)·m·E[m]/E[m²]) of the spread (Kish's design
    effect d comes back over the traffic's mix of m); light units share the buckets evenly."""
    mean = traffic.requests_per_unit
    light, each, share = traffic.light_requests(), traffic.heavy_requests, traffic.heavy_share
    square = (1.0 - share) * light * light + share * each * each
    stretch = (deff - 1.0) * mean / square if square > 0 else 0.0

    def weight(m: float) -> float:
        return m * (1.0 + stretch * m)

    parts = []
    for arm in (0, 1):
        units = arms.units[arm]
        heavy = units * share if arms.heavy is None else arms.heavy[arm]
        spread = _arm_spread(max(0.0, units - heavy), weight(light), heavy, weight(each))
        requests = max(arms.requests[arm], 1.0)
        parts.append((spread[0] / (requests * requests), spread[1]))
    total = parts[0][0] + parts[1][0]
    if total <= 0.0:
        return math.inf
    return 1.0 / math.fsum((v / total) ** 2 / nu for v, nu in parts if v > 0.0)


def _arm_spread(
    light: float, per_light: float, heavy: float, per_heavy: float
) -> tuple[float, float]:
    """An arm's spread Σ s_b and its degrees (Σ s_b)² / Σ s_b² over the buckets."""
    occupied = UNIT_BUCKETS * -math.expm1(-light / UNIT_BUCKETS) if light > 0 else 0.0
    total = light * per_light + heavy * per_heavy
    if total <= 0.0:
        return 0.0, math.inf
    each = light * per_light / occupied if occupied > 0 else 0.0
    squares = occupied * each * each + heavy * (per_heavy * per_heavy + 2.0 * each * per_heavy)
    return total, total * total / squares


def _poisson(mean: float) -> list[tuple[float, int]]:
    """Poisson(mean) as (chance, count), normalised over the counts that matter; empty
    where the mean is 0 or past :data:`MIXED_UNITS`."""
    if not 0.0 < mean <= MIXED_UNITS:
        return []
    top = math.ceil(mean + 10.0 * math.sqrt(mean) + 10.0)
    log_mean = math.log(mean)
    chances = [math.exp(j * log_mean - mean - math.lgamma(j + 1)) for j in range(top + 1)]
    total = math.fsum(chances)
    return [(c / total, j) for j, c in enumerate(chances) if c / total > _NEGLIGIBLE]
